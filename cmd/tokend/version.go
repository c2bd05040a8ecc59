package main

import (
	"context"
	"fmt"
	"runtime"
)

// cmdVersion prints "tokend <version> (<go version>)".
func (c *cli) cmdVersion(_ context.Context, args []string) int {
	if len(args) > 0 {
		fmt.Fprintf(c.stderr, "tokend: version: unexpected argument %q\n", args[0])
		return exitUsage
	}
	fmt.Fprintf(c.stdout, "tokend %s (%s)\n", version, runtime.Version())
	return exitOK
}
