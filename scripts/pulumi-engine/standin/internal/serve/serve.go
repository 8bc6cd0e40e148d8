// Package serve is the gRPC side shared by the stand-in resource plugins: the
// engine handshake, provider configuration, and the dispatch of each resource
// call to the Resource that serves its type token. It holds no resource logic.
package serve

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// StandinSuffix marks every version a stand-in reports, so that `pulumi plugin ls` and the engine's log
// never pass it off as upstream's.
const StandinSuffix = "+hx-standin"

// Plugin is one stand-in resource plugin: its package name, the upstream release it stands in for, and
// the resource types it serves, by type token.
type Plugin struct {
	Name            string
	UpstreamVersion string
	Resources       map[string]Resource
	// Configure answers, as upstream's provider framework answers them.
	SupportsPreview bool
}

// Log sends diagnostics about one resource to the engine.
type Log interface {
	// Status is an ephemeral line in the progress display, as upstream's InfoStatus.
	Status(msg string)
	Warning(msg string)
	Error(msg string)
}

// CheckRequest, DiffRequest, ... carry the engine's request with properties already unmarshalled, secrets
// and unknowns kept.
type CheckRequest struct {
	URN        resource.URN
	Olds, News resource.PropertyMap
	RandomSeed []byte
}

type DiffRequest struct {
	ID                    string
	URN                   resource.URN
	State, News, OldInput resource.PropertyMap
	HasOldInputs          bool
	IgnoreChanges         []string
}

type CreateRequest struct {
	URN     resource.URN
	Inputs  resource.PropertyMap
	Preview bool
	Log     Log
}

type ReadRequest struct {
	ID            string
	URN           resource.URN
	State, Inputs resource.PropertyMap
}

type UpdateRequest struct {
	ID                     string
	URN                    resource.URN
	State, News, OldInputs resource.PropertyMap
	Preview                bool
	IgnoreChanges          []string
	Log                    Log
}

type DeleteRequest struct {
	ID    string
	URN   resource.URN
	State resource.PropertyMap
	Log   Log
}

// Resource is what one resource type does on each call.
type Resource interface {
	Check(ctx context.Context, req CheckRequest) (resource.PropertyMap, []*pulumirpc.CheckFailure, error)
	Diff(ctx context.Context, req DiffRequest) (*pulumirpc.DiffResponse, error)
	Create(ctx context.Context, req CreateRequest) (string, resource.PropertyMap, error)
	Read(ctx context.Context, req ReadRequest) (string, resource.PropertyMap, resource.PropertyMap, error)
	Update(ctx context.Context, req UpdateRequest) (resource.PropertyMap, error)
	Delete(ctx context.Context, req DeleteRequest) error
}

// Main serves the plugin the way the engine launches a resource plugin: its address as the one argument
// (after any logging flags), and the port the plugin listens on as the one line of stdout.
func Main(p Plugin) {
	flags := flag.NewFlagSet(os.Args[0], flag.ContinueOnError)
	flags.Bool("logtostderr", false, "")
	flags.Bool("logflow", false, "")
	flags.Int("v", 0, "")
	flags.String("tracing", "", "")
	if err := flags.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-%s: %v\n", p.Name, err)
		os.Exit(2)
	}
	if flags.NArg() < 1 {
		fmt.Fprintf(os.Stderr, "pulumi-resource-%s %s%s: a stand-in resource plugin, started by the Pulumi engine with its address\n",
			p.Name, p.UpstreamVersion, StandinSuffix)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(flags.Arg(0), grpc.WithTransportCredentials(insecure.NewCredentials()), rpcutil.GrpcChannelOptions())
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-%s: connecting to the engine at %s: %v\n", p.Name, flags.Arg(0), err)
		os.Exit(1)
	}
	server := &provider{plugin: p, engine: pulumirpc.NewEngineClient(conn), cancel: make(chan struct{})}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(s *grpc.Server) error {
			pulumirpc.RegisterResourceProviderServer(s, server)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-%s: %v\n", p.Name, err)
		os.Exit(1)
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-%s: %v\n", p.Name, err)
		os.Exit(1)
	}
}

type provider struct {
	pulumirpc.UnimplementedResourceProviderServer
	plugin     Plugin
	engine     pulumirpc.EngineClient
	cancelOnce sync.Once
	cancel     chan struct{}
}

var unmarshal = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, KeepResources: true, SkipNulls: true}

func (p *provider) props(s *structpb.Struct, label string) (resource.PropertyMap, error) {
	opts := unmarshal
	opts.Label = label
	return plugin.UnmarshalProperties(s, opts)
}

func (p *provider) marshal(m resource.PropertyMap, preview bool) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, plugin.MarshalOptions{KeepUnknowns: preview, KeepSecrets: true, KeepResources: true})
}

func (p *provider) resourceOf(urn string) (Resource, error) {
	typ := string(resource.URN(urn).Type())
	if r, ok := p.plugin.Resources[typ]; ok {
		return r, nil
	}
	return nil, status.Errorf(codes.InvalidArgument,
		"the hx-backup stand-in of pulumi-resource-%s does not implement resource type %s (it serves %s)",
		p.plugin.Name, typ, strings.Join(p.types(), ", "))
}

func (p *provider) types() []string {
	var out []string
	for t := range p.plugin.Resources {
		out = append(out, t)
	}
	return out
}

// ctx ends when the engine cancels the plugin, so running commands stop.
func (p *provider) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-p.cancel:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

type engineLog struct {
	engine pulumirpc.EngineClient
	urn    string
}

func (l engineLog) send(sev pulumirpc.LogSeverity, msg string, ephemeral bool) {
	_, _ = l.engine.Log(context.Background(), &pulumirpc.LogRequest{Severity: sev, Message: msg, Urn: l.urn, Ephemeral: ephemeral})
}
func (l engineLog) Status(msg string)  { l.send(pulumirpc.LogSeverity_INFO, msg, true) }
func (l engineLog) Warning(msg string) { l.send(pulumirpc.LogSeverity_WARNING, msg, false) }
func (l engineLog) Error(msg string)   { l.send(pulumirpc.LogSeverity_ERROR, msg, false) }

func (p *provider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: p.plugin.UpstreamVersion + StandinSuffix}, nil
}

func (p *provider) GetSchema(_ context.Context, req *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	// No schema: the SDKs in package-lock.json are upstream's; the engine needs none to run them.
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":%q,"version":%q}`, p.plugin.Name, p.plugin.UpstreamVersion)}, nil
}

func (p *provider) Attach(context.Context, *pulumirpc.PluginAttach) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (p *provider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *provider) DiffConfig(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := p.props(req.GetOldInputs(), "olds")
	if err != nil {
		return nil, err
	}
	news, err := p.props(req.GetNews(), "news")
	if err != nil {
		return nil, err
	}
	if olds.DeepEquals(news) {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_SOME}, nil
}

func (p *provider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: p.plugin.SupportsPreview, AcceptResources: true}, nil
}

func (p *provider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.cancelOnce.Do(func() { close(p.cancel) })
	return &emptypb.Empty{}, nil
}

// request finds the resource that serves urn's type and unmarshals each of the request's property
// structs (a nil struct is an empty map), secrets and unknowns kept.
func (p *provider) request(urn string, structs ...*structpb.Struct) (Resource, []resource.PropertyMap, error) {
	r, err := p.resourceOf(urn)
	if err != nil {
		return nil, nil, err
	}
	maps := make([]resource.PropertyMap, len(structs))
	for i, s := range structs {
		if maps[i], err = p.props(s, urn); err != nil {
			return nil, nil, err
		}
	}
	return r, maps, nil
}

func (p *provider) Check(ctx context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	r, m, err := p.request(req.GetUrn(), req.GetOlds(), req.GetNews())
	if err != nil {
		return nil, err
	}
	inputs, failures, err := r.Check(ctx, CheckRequest{URN: resource.URN(req.GetUrn()), Olds: m[0], News: m[1], RandomSeed: req.GetRandomSeed()})
	if err != nil {
		return nil, err
	}
	out, err := plugin.MarshalProperties(inputs, plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, KeepResources: true})
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: out, Failures: failures}, nil
}

func (p *provider) Diff(ctx context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	r, m, err := p.request(req.GetUrn(), req.GetOlds(), req.GetNews(), req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	return r.Diff(ctx, DiffRequest{
		ID: req.GetId(), URN: resource.URN(req.GetUrn()), State: m[0], News: m[1],
		OldInput: m[2], HasOldInputs: req.GetOldInputs() != nil, IgnoreChanges: req.GetIgnoreChanges(),
	})
}

func (p *provider) Create(parent context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	r, m, err := p.request(req.GetUrn(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	ctx, cancel := p.ctx(parent)
	defer cancel()
	id, outs, err := r.Create(ctx, CreateRequest{URN: resource.URN(req.GetUrn()), Inputs: m[0], Preview: req.GetPreview(), Log: engineLog{p.engine, req.GetUrn()}})
	if err != nil {
		return nil, err
	}
	out, err := p.marshal(outs, req.GetPreview())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: out}, nil
}

func (p *provider) Read(ctx context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	r, m, err := p.request(req.GetUrn(), req.GetProperties(), req.GetInputs())
	if err != nil {
		return nil, err
	}
	id, state, inputs, err := r.Read(ctx, ReadRequest{ID: req.GetId(), URN: resource.URN(req.GetUrn()), State: m[0], Inputs: m[1]})
	if err != nil {
		return nil, err
	}
	outState, err := p.marshal(state, false)
	if err != nil {
		return nil, err
	}
	outInputs, err := p.marshal(inputs, false)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.ReadResponse{Id: id, Properties: outState, Inputs: outInputs}, nil
}

func (p *provider) Update(parent context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	r, m, err := p.request(req.GetUrn(), req.GetOlds(), req.GetNews(), req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	ctx, cancel := p.ctx(parent)
	defer cancel()
	outs, err := r.Update(ctx, UpdateRequest{
		ID: req.GetId(), URN: resource.URN(req.GetUrn()), State: m[0], News: m[1], OldInputs: m[2],
		Preview: req.GetPreview(), IgnoreChanges: req.GetIgnoreChanges(), Log: engineLog{p.engine, req.GetUrn()},
	})
	if err != nil {
		return nil, err
	}
	out, err := p.marshal(outs, req.GetPreview())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: out}, nil
}

func (p *provider) Delete(parent context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	r, m, err := p.request(req.GetUrn(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	ctx, cancel := p.ctx(parent)
	defer cancel()
	if err := r.Delete(ctx, DeleteRequest{ID: req.GetId(), URN: resource.URN(req.GetUrn()), State: m[0], Log: engineLog{p.engine, req.GetUrn()}}); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// DetailedDiff turns the diff of old and new inputs into the engine's answer: every changed path,
// `replace(path)` saying which force a replacement, and the top-level keys as `diffs` and `replaces`.
func DetailedDiff(oldInputs, news resource.PropertyMap, replace func(path string) bool) *pulumirpc.DiffResponse {
	objDiff := oldInputs.Diff(news)
	detailed := map[string]*pulumirpc.PropertyDiff{}
	diffs, replaces := map[string]bool{}, map[string]bool{}
	for path, d := range plugin.NewDetailedDiffFromObjectDiff(objDiff, false) {
		kind := d.Kind
		if replace(path) {
			kind = kind.AsReplace()
		}
		detailed[path] = &pulumirpc.PropertyDiff{Kind: pulumirpc.PropertyDiff_Kind(kind), InputDiff: false}
		head := path
		if pp, err := resource.ParsePropertyPath(path); err == nil && len(pp) > 0 {
			if s, ok := pp[0].(string); ok {
				head = s
			}
		}
		diffs[head] = true
		if kind.IsReplace() {
			replaces[head] = true
		}
	}
	changes := pulumirpc.DiffResponse_DIFF_NONE
	if objDiff.AnyChanges() {
		changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return &pulumirpc.DiffResponse{
		Changes: changes, DetailedDiff: detailed, HasDetailedDiff: true,
		Diffs: keys(diffs), Replaces: keys(replaces),
	}
}

func keys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
