package config_test

import (
	"fmt"
	"os"

	"github.com/writ-dev/writ/config"
)

func ExampleInit() {
	dir, err := os.MkdirTemp("", "writ-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	c, err := config.Init(dir, "acme")
	if err != nil {
		fmt.Println(err)
		return
	}
	rt, err := c.Open()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Domain, c.Listen, rt.Policies.FlowNames())
	_, err = config.Init(dir, "acme")
	fmt.Println(err == nil)
	// Output:
	// acme 127.0.0.1:4222 [two-sre-leads]
	// false
}
