// Package command stands in for pulumi-resource-command's `command:remote:Command` (and CopyToRemote, copy.go): the inputs this
// project sets, checked and defaulted as upstream checks them; a diff in which any changed input is an
// update and a changed `triggers` a replacement; create, update and delete running their command over SSH.
package command

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"

	"hx-backup/pulumi-engine/standin/internal/serve"
)

// Token is the one resource type this stand-in serves.
const Token = "command:remote:Command"

// inputs lists every input of upstream's remote Command; implemented says which the stand-in runs.
var inputs = map[resource.PropertyKey]bool{
	"connection": true, "create": true, "update": true, "delete": true, "stdin": true,
	"environment": true, "triggers": true, "logging": true, "addPreviousOutputInEnv": true,
}

// connectionFields: true for a field the stand-in implements, false for one of upstream's it refuses.
var connectionFields = map[resource.PropertyKey]bool{
	"host": true, "port": true, "user": true, "privateKey": true, "agentSocketPath": true,
	"dialErrorLimit": true, "perDialTimeout": true, "hostKey": true, "proxy": true,
	"password": false, "privateKeyPassword": false,
}

var loggingValues = []string{"stdout", "stderr", "stdoutAndStderr", "none"}

// Command is the resource.
type Command struct{}

func failure(property, reason string) *pulumirpc.CheckFailure {
	return &pulumirpc.CheckFailure{Property: property, Reason: reason}
}

func notImplemented(property string) *pulumirpc.CheckFailure {
	return failure(property, fmt.Sprintf("the hx-backup stand-in of pulumi-resource-command does not implement %q; "+
		"use the upstream plugin (scripts/install-pulumi.sh) or leave it unset", property))
}

// Check validates the inputs and fills in upstream's connection defaults; the connection is secret,
// and so are the private keys inside it.
func (Command) Check(_ context.Context, req serve.CheckRequest) (resource.PropertyMap, []*pulumirpc.CheckFailure, error) {
	news := req.News.Copy()
	var failures []*pulumirpc.CheckFailure
	for _, k := range news.StableKeys() {
		if !inputs[k] && !strings.HasPrefix(string(k), "__") {
			failures = append(failures, notImplemented(string(k)))
		}
	}
	conn, ok := news["connection"]
	if !ok || conn.IsNull() {
		failures = append(failures, failure("connection", "Missing required field 'connection' on 'remote.CommandInputs'"))
	} else {
		conn, failures = checkConnection(conn, "connection", true, failures)
		news["connection"] = makeSecret(conn)
	}
	for _, k := range []resource.PropertyKey{"create", "update", "delete", "stdin", "logging"} {
		if v, ok := news[k]; ok && known(v) && !reveal(v).IsString() && !reveal(v).IsNull() {
			failures = append(failures, failure(string(k), fmt.Sprintf("%s must be a string", k)))
		}
	}
	if v, ok := news["logging"]; ok && known(v) && reveal(v).IsString() {
		if s := reveal(v).StringValue(); !contains(loggingValues, s) {
			failures = append(failures, failure("logging", fmt.Sprintf("logging must be one of %s, got %q", strings.Join(loggingValues, ", "), s)))
		}
	}
	if v, ok := news["environment"]; ok && known(v) && !reveal(v).IsNull() {
		if !reveal(v).IsObject() {
			failures = append(failures, failure("environment", "environment must be a map of strings"))
		} else {
			for k, e := range reveal(v).ObjectValue() {
				if known(e) && !reveal(e).IsString() {
					failures = append(failures, failure("environment."+string(k), "environment values must be strings"))
				}
			}
		}
	}
	if v, ok := news["triggers"]; ok && known(v) && !reveal(v).IsNull() && !reveal(v).IsArray() {
		failures = append(failures, failure("triggers", "triggers must be a list"))
	}
	if v, ok := news["addPreviousOutputInEnv"]; ok && known(v) && !reveal(v).IsNull() && !reveal(v).IsBool() {
		failures = append(failures, failure("addPreviousOutputInEnv", "addPreviousOutputInEnv must be a boolean"))
	}
	return news, failures, nil
}

func checkConnection(v resource.PropertyValue, path string, proxyAllowed bool, failures []*pulumirpc.CheckFailure) (resource.PropertyValue, []*pulumirpc.CheckFailure) {
	if !known(v) {
		return v, failures
	}
	plain := reveal(v)
	if !plain.IsObject() {
		return v, append(failures, failure(path, path+" must be an object"))
	}
	obj := plain.ObjectValue().Copy()
	for _, k := range obj.StableKeys() {
		implemented, isField := connectionFields[k]
		switch {
		case !isField || (k == "proxy" && !proxyAllowed):
			failures = append(failures, failure(path+"."+string(k), fmt.Sprintf("%s has no field %q", path, k)))
		case !implemented && !obj[k].IsNull():
			failures = append(failures, notImplemented(path+"."+string(k)))
		}
	}
	if h, ok := obj["host"]; !ok || h.IsNull() {
		failures = append(failures, failure(path+".host", fmt.Sprintf("Missing required field 'host' on '%s'", path)))
	}
	defaults := resource.PropertyMap{
		"user": resource.NewStringProperty("root"), "port": resource.NewNumberProperty(22),
		"dialErrorLimit": resource.NewNumberProperty(10), "perDialTimeout": resource.NewNumberProperty(15),
	}
	for k, d := range defaults {
		if cur, ok := obj[k]; !ok || cur.IsNull() {
			obj[k] = d
		}
	}
	for _, k := range []resource.PropertyKey{"host", "user", "privateKey", "agentSocketPath", "hostKey"} {
		if cur, ok := obj[k]; ok && known(cur) && !reveal(cur).IsNull() && !reveal(cur).IsString() {
			failures = append(failures, failure(path+"."+string(k), fmt.Sprintf("%s.%s must be a string", path, k)))
		}
	}
	for _, k := range []resource.PropertyKey{"port", "dialErrorLimit", "perDialTimeout"} {
		if cur, ok := obj[k]; ok && known(cur) && !reveal(cur).IsNumber() {
			failures = append(failures, failure(path+"."+string(k), fmt.Sprintf("%s.%s must be a number", path, k)))
		}
	}
	if key, ok := obj["privateKey"]; ok && !key.IsNull() {
		obj["privateKey"] = makeSecret(key)
	}
	if proxy, ok := obj["proxy"]; ok && proxyAllowed && !proxy.IsNull() {
		obj["proxy"], failures = checkConnection(proxy, path+".proxy", false, failures)
	}
	return resource.NewObjectProperty(obj), failures
}

// Diff compares the old inputs with the new ones: every changed input is an update, and a change of
// `triggers` as a whole a replacement (the SDK asks the engine to replace on `triggers[*]` too).
func (Command) Diff(_ context.Context, req serve.DiffRequest) (*pulumirpc.DiffResponse, error) {
	news := req.News.Copy()
	for _, ignored := range req.IgnoreChanges {
		if v, ok := req.State[resource.PropertyKey(ignored)]; ok {
			news[resource.PropertyKey(ignored)] = v
		}
	}
	for k := range news {
		if k == "version" || strings.HasPrefix(string(k), "__") {
			delete(news, k)
		}
	}
	return serve.DetailedDiff(oldInputs(req, inputs), news, func(path string) bool { return path == "triggers" }), nil
}

// oldInputs: the inputs the resource was last given, or, from a state written without them, those of its
// outputs that are inputs (named by keys).
func oldInputs(req serve.DiffRequest, keys map[resource.PropertyKey]bool) resource.PropertyMap {
	if req.HasOldInputs {
		return req.OldInput
	}
	olds := resource.PropertyMap{}
	for k := range keys {
		if v, ok := req.State[k]; ok {
			olds[k] = v
		}
	}
	return olds
}

// Create runs `create`, when set; a preview runs nothing and leaves stdout and stderr unknown.
func (Command) Create(ctx context.Context, req serve.CreateRequest) (string, resource.PropertyMap, error) {
	id, err := resource.NewUniqueHex(req.URN.Name(), 8, 0)
	if err != nil {
		return "", nil, err
	}
	outs := req.Inputs.Copy()
	if req.Preview {
		outs["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
		outs["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
		return id, outs, nil
	}
	st := stateOf(outs, "", "")
	if create, ok := st.command("create"); ok {
		if err := st.run(ctx, create, req.Log); err != nil {
			return "", nil, err
		}
	}
	return id, st.outputs(outs), nil
}

// Read returns the state as it is: upstream's remote Command reads nothing from the host.
func (Command) Read(_ context.Context, req serve.ReadRequest) (string, resource.PropertyMap, resource.PropertyMap, error) {
	return req.ID, req.State, req.Inputs, nil
}

// Update runs `update`, else `create`, with the new inputs and the previous stdout and stderr.
func (Command) Update(ctx context.Context, req serve.UpdateRequest) (resource.PropertyMap, error) {
	outs := req.News.Copy()
	st := stateOf(outs, plainString(req.State["stdout"]), plainString(req.State["stderr"]))
	if !req.Preview {
		cmd, ok := st.command("update")
		if !ok {
			cmd, ok = st.command("create")
		}
		if ok {
			if err := st.run(ctx, cmd, req.Log); err != nil {
				return nil, err
			}
		}
	}
	return st.outputs(outs), nil
}

// Delete runs `delete`, when set, with everything the state holds (connection, stdin, environment).
func (Command) Delete(ctx context.Context, req serve.DeleteRequest) error {
	st := stateOf(req.State, plainString(req.State["stdout"]), plainString(req.State["stderr"]))
	if cmd, ok := st.command("delete"); ok {
		return st.run(ctx, cmd, req.Log)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys(m resource.PropertyMap) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, string(k))
	}
	sort.Strings(out)
	return out
}
