/* cmd_inspect.c — placeholder. */
#include "cli.h"

int v3_cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return v3_cli_fail("inspect", "not implemented yet");
}
