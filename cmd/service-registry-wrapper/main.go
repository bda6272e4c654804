// Command service-registry-wrapper registers a long-running process in the
// Service Registry and heartbeats it while it lives, under the name and
// flags of the original toolkit's wrapper:
//
//	service-registry-wrapper --id=<service id> --tags=<comma separated list of tags> \
//	    --metadata=<comma separated list of key=value pairs> \
//	    --interval=<heartbeat interval> [--abort-on-failure] \
//	    <path to the process which is being wrapped> <process arguments>
//
// It is the same program as `svcreg wrap`; see package wrapper.
package main

import (
	"context"
	"os"

	"github.com/svcreg/svcreg/wrapper"
)

func main() {
	os.Exit(wrapper.Main(context.Background(), "service-registry-wrapper", os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
