package main

import (
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
)

// templateConfig is what svcreg template runs from: the schema of its
// config file, how to reach the registry in [registry] beside the
// renderer's own keys, with the command line applied.
type templateConfig struct {
	// Registry is the connection: the flags given, over the file's
	// [registry], over the SVCREG_* environment.
	Registry registry.Config `toml:"registry"`
	render.Config
	// secretInFile is whether --config's [registry] holds a credential
	// (api_key, password, token).
	secretInFile bool
}
