/* `capsule serve` (the MCP server) and `capsule warmup`. */
#ifndef CAPSULE_CLI_SERVE_H
#define CAPSULE_CLI_SERVE_H

extern const char serve_options_usage[];
int command_serve(int argc, char **argv);
int command_warmup(int argc, char **argv);

#endif
