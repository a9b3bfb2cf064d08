/*
 * proto.h - the client protocol (proto.c): JSON messages from WebSocket
 * clients, answered over the same connection.
 */
#ifndef PROTO_H
#define PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "ws.h"

/* handlers.message: one whole message from c (text must be JSON). */
void	proto_message(struct ws_conn *c, struct ws_app_conn *a, int opcode,
	    const uint8_t *p, size_t n);

#endif
