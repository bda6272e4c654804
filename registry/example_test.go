package registry_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/svcreg/svcreg/registry"
)

// A client for the Rackspace-hosted registry, authenticated with an API
// key through the US identity service.
func ExampleNew() {
	c, err := registry.New(registry.Config{
		Username: os.Getenv("SVCREG_USERNAME"),
		APIKey:   os.Getenv("SVCREG_API_KEY"),
		Region:   "us",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	limits, err := c.Limits(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("services allowed:", limits.Resource["service"])
}

// Register a service and keep it alive until the program ends; then
// deregister it.
func ExampleClient_Register() {
	apiURL, authURL, stop := startExampleRegistry()
	defer stop()
	ctx := context.Background()

	c, err := registry.New(registry.Config{URL: apiURL, AuthURL: authURL, Username: "dev", APIKey: "dev"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	firstBeat := make(chan registry.Beat, 1)
	hb, err := c.Register(ctx, registry.Service{
		ID:               "web-1",
		HeartbeatTimeout: 30,
		Tags:             []string{"www"},
		Metadata:         map[string]string{"ip": "10.0.0.5", "port": "8080"},
	}, registry.RegisterOptions{Heartbeat: registry.HeartbeatOptions{
		OnBeat: func(b registry.Beat) {
			if b.Err != nil {
				log.Printf("heartbeat %d failed (overdue: %v): %v", b.Failures, b.Overdue, b.Err)
			}
			select {
			case firstBeat <- b:
			default:
			}
		},
	}})
	if err != nil {
		log.Fatal(err)
	}
	b := <-firstBeat
	fmt.Println("first heartbeat ok:", b.Err == nil)

	// … the service runs; if the registry forgets it, hb.Done() is closed
	// and hb.Err() matches registry.ErrNotFound.

	hb.Stop()
	if err := c.DeleteService(ctx, hb.ID()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("deregistered", hb.ID())
	// Output:
	// first heartbeat ok: true
	// deregistered web-1
}

// List the services carrying a tag; the iterator fetches every page.
func ExampleClient_ListServices() {
	apiURL, authURL, stop := startExampleRegistry()
	defer stop()
	ctx := context.Background()
	c, err := registry.New(registry.Config{URL: apiURL, AuthURL: authURL, Username: "dev", APIKey: "dev"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for i, tag := range []string{"www", "db", "www"} {
		s := registry.Service{ID: fmt.Sprintf("%s-%d", tag, i), HeartbeatTimeout: 60, Tags: []string{tag},
			Metadata: map[string]string{"port": fmt.Sprint(8080 + i)}}
		if _, err := c.CreateService(ctx, s); err != nil {
			log.Fatal(err)
		}
	}

	for s, err := range c.ListServices(ctx, registry.ServiceListOptions{Tag: "www"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(s.ID, s.Metadata["port"])
	}
	// Output:
	// www-0 8080
	// www-2 8082
}

// Mirror the registry: list, then follow the events feed from the list's
// FeedMarker, and list again when the marker has expired.
func ExampleClient_Watch() {
	apiURL, authURL, stop := startExampleRegistry()
	defer stop()
	c, err := registry.New(registry.Config{URL: apiURL, AuthURL: authURL, Username: "dev", APIKey: "dev"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{})
	if err != nil {
		log.Fatal(err)
	}
	// (A real mirror fetches the remaining pages with Marker: page.NextMarker.)

	// Someone else changes things.
	go func() {
		c.CreateService(ctx, registry.Service{ID: "api-1", HeartbeatTimeout: 30})
		c.SetConfig(ctx, "/production/color", "blue")
	}()

	n := 0
	for ev, err := range c.Watch(ctx, page.FeedMarker, registry.WatchOptions{}) {
		if errors.Is(err, registry.ErrMarkerExpired) {
			// List again and watch from the new list's FeedMarker.
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		switch {
		case ev.IsService():
			s, _ := ev.Service()
			fmt.Println(ev.Type, s.ID)
		default:
			ch, _ := ev.ConfigChange()
			fmt.Println(ev.Type, ch.ID, *ch.NewValue)
		}
		// ev.ID is the marker to resume from after this event.
		if n++; n == 2 {
			break
		}
	}
	// Output:
	// service.join api-1
	// configuration_value.update /production/color blue
}

// Configuration values: set, get (namespaced ids begin with "/"), and list
// a namespace.
func ExampleClient_SetConfig() {
	apiURL, authURL, stop := startExampleRegistry()
	defer stop()
	ctx := context.Background()
	c, err := registry.New(registry.Config{URL: apiURL, AuthURL: authURL, Username: "dev", APIKey: "dev"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if err := c.SetConfig(ctx, "/production/cassandra/listen_ip", "10.0.0.1"); err != nil {
		log.Fatal(err)
	}
	if err := c.SetConfig(ctx, "/production/cassandra/listen_port", "9160"); err != nil {
		log.Fatal(err)
	}
	v, err := c.GetConfig(ctx, "/production/cassandra/listen_ip")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.Value)

	for v, err := range c.ListConfig(ctx, registry.ConfigListOptions{Namespace: "/production/cassandra"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(v.ID, "=", v.Value)
	}

	_, err = c.GetConfig(ctx, "/production/zookeeper/hosts")
	fmt.Println("missing:", errors.Is(err, registry.ErrNotFound))
	// Output:
	// 10.0.0.1
	// /production/cassandra/listen_ip = 10.0.0.1
	// /production/cassandra/listen_port = 9160
	// missing: true
}

// Keep serving the last good services list while the registry is down.
func ExampleServicesCache() {
	apiURL, authURL, stop := startExampleRegistry()
	ctx := context.Background()
	c, err := registry.New(registry.Config{URL: apiURL, AuthURL: authURL, Username: "dev", APIKey: "dev"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateService(ctx, registry.Service{ID: "www-1", HeartbeatTimeout: 60, Tags: []string{"www"}}); err != nil {
		log.Fatal(err)
	}

	cache := registry.NewServicesCache(c, registry.CacheOptions{Tag: "www", RefreshInterval: time.Nanosecond})
	list, err := cache.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(list.Services), "services, stale:", list.Stale)

	stop() // the registry goes away
	list, err = cache.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(list.Services), "services, stale:", list.Stale)
	// Output:
	// 1 services, stale: false
	// 1 services, stale: true
}
