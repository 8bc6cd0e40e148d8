// pulumi-resource-random, the hx-backup stand-in: serves RandomPassword and RandomBytes where upstream's
// plugin cannot be had (scripts/pulumi-engine/standin/README.md).
package main

import (
	"hx-backup/pulumi-engine/standin/internal/random"
	"hx-backup/pulumi-engine/standin/internal/serve"
)

func main() {
	serve.Main(serve.Plugin{
		Name:            "random",
		UpstreamVersion: "4.21.2",
		SupportsPreview: true,
		Resources: map[string]serve.Resource{
			random.PasswordToken: random.Password{},
			random.BytesToken:    random.Bytes{},
		},
	})
}
