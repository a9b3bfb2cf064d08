/*
 * cli.h - the command line client (cli.c): wsd pub, wsd sub, wsd token,
 * wsd help.  It lives in the server's binary and uses the server's codecs;
 * main() hands argv over when argv[1] names one of these commands (the
 * server's own options all start with "--", so the two never collide).
 *
 * Exit status of cli_main():
 *
 *	0	done (sub: stopped by SIGINT or SIGTERM, its state saved)
 *	1	failed at run time: refused, unreachable, a bad stdin line, a
 *		state file that cannot be read or written, a drop with --once
 *	2	bad usage: unknown option, missing or malformed argument
 */
#ifndef CLI_H
#define CLI_H

/* 1 if name is a command cli_main() runs ("pub", "sub", "token", "help"). */
int	cli_is_command(const char *name);

/* Run command argv[0] with argv[1..argc); returns the exit status above. */
int	cli_main(int argc, char **argv);

#endif
