/*
 * sse.h - the text/event-stream wire (sse.c): records, and the list of
 * group positions an SSE id carries.  Pure: no I/O.
 *
 * A record (WHATWG HTML, "Server-sent events") is an optional "id:" line,
 * "data:" lines and a blank line.  A reader joins the data lines with LF,
 * so a JSON text with line breaks in its white space travels as several
 * data lines and is read back as JSON.  A record with an id and no data
 * moves the reader's Last-Event-ID without dispatching an event.
 */
#ifndef SSE_H
#define SSE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Write the record for id[0..idlen) (no id line when id is NULL) and
 * text[0..n) (no data lines when text is NULL) to out, and return its
 * length.  With out NULL, only the length is returned: call it first to
 * size the buffer.  Each line break in text (CR LF, CR or LF) starts a
 * new "data:" line.  id must hold no CR, LF or NUL (sse_pos_next()'s
 * names and positions do not).
 */
size_t	sse_record(uint8_t *out, const char *id, size_t idlen,
	    const uint8_t *text, size_t n);

/*
 * The next "NAME=POS" of a position list "NAME=POS,NAME=POS,..." (an SSE
 * id, Last-Event-ID, or ?since= on /sse) starting at *s, before end:
 * returns 1 with name and pos set (*s moves past it and its comma), 0 at
 * the end, or -1 when malformed (an empty name or position, no '=', an
 * empty item).  What NAME and POS may hold is for the caller to check.
 */
int	sse_pos_next(const char **s, const char *end, const char **name,
	    size_t *nlen, const char **pos, size_t *plen);

#endif
