// pulumi-resource-command, the hx-backup stand-in: serves command:remote:Command and CopyToRemote where upstream's
// plugin cannot be had (scripts/pulumi-engine/standin/README.md).
package main

import (
	"hx-backup/pulumi-engine/standin/internal/command"
	"hx-backup/pulumi-engine/standin/internal/serve"
)

func main() {
	serve.Main(serve.Plugin{
		Name:            "command",
		UpstreamVersion: "1.2.1",
		SupportsPreview: true,
		Resources:       map[string]serve.Resource{command.Token: command.Command{}, command.CopyToRemoteToken: command.CopyToRemote{}},
	})
}
