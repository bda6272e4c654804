package registry_test

import (
	"net/http/httptest"
	"os"

	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store/boltstore"
)

// startExampleRegistry runs a registry in-process for the examples, as
// `svcreg server --dev` does: any username authenticates with the API key
// "dev". It returns the API and identity URLs and a function that stops
// the registry.
func startExampleRegistry() (apiURL, authURL string, stop func()) {
	dir, err := os.MkdirTemp("", "registry-example")
	if err != nil {
		panic(err)
	}
	st, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		panic(err)
	}
	api := server.New(server.Config{Store: st, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true})})
	hs := httptest.NewServer(api)
	return hs.URL + "/v1.0", hs.URL + "/v2.0", func() {
		hs.Close()
		st.Close()
		os.RemoveAll(dir)
	}
}
