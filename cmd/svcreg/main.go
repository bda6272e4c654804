// Command svcreg is the Service Registry toolkit: the registry server, the
// config-template renderer, the process wrapper and the API commands.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
