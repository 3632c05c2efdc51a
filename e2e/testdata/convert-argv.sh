#!/bin/sh
# Records the argument vector ImageMagick is started with, one argument a
# line, then runs Debian's convert with it unchanged. The thumbnail test
# reads the record to prove refused values never reach a command line.
printf '%s\n' "--- $#" "$@" >>"$ARGV_LOG"
exec /usr/bin/convert "$@"
