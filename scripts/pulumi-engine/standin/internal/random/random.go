// Package random stands in for the two pulumi-resource-random types an hx-backup stack may hold:
// RandomPassword, whose ID is "none" and whose result is secret, and RandomBytes, whose ID is the base64
// of its bytes: a key in plain text, which is why the keyring left it. Every input forces a replacement.
package random

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"golang.org/x/crypto/bcrypt"

	"hx-backup/pulumi-engine/standin/internal/serve"
)

const (
	PasswordToken = "random:index/randomPassword:RandomPassword"
	BytesToken    = "random:index/randomBytes:RandomBytes"
)

// A field of a resource: its default (nil: none) and whether the stand-in implements it.
type field struct {
	def       resource.PropertyValue
	kind      string // "number", "bool", "string", "map"
	required  bool
	implement bool
}

func boolDefault(b bool) resource.PropertyValue { return resource.NewBoolProperty(b) }

var passwordFields = map[resource.PropertyKey]field{
	"length":          {kind: "number", required: true, implement: true},
	"keepers":         {kind: "map", implement: true},
	"special":         {def: boolDefault(true), kind: "bool", implement: true},
	"upper":           {def: boolDefault(true), kind: "bool", implement: true},
	"lower":           {def: boolDefault(true), kind: "bool", implement: true},
	"numeric":         {def: boolDefault(true), kind: "bool", implement: true},
	"number":          {def: boolDefault(true), kind: "bool", implement: true},
	"minUpper":        {def: resource.NewNumberProperty(0), kind: "number", implement: true},
	"minLower":        {def: resource.NewNumberProperty(0), kind: "number", implement: true},
	"minNumeric":      {def: resource.NewNumberProperty(0), kind: "number", implement: true},
	"minSpecial":      {def: resource.NewNumberProperty(0), kind: "number", implement: true},
	"overrideSpecial": {kind: "string", implement: true},
}

var bytesFields = map[resource.PropertyKey]field{
	"length":  {kind: "number", required: true, implement: true},
	"keepers": {kind: "map", implement: true},
}

// Password is random:index/randomPassword:RandomPassword.
type Password struct{}

// Bytes is random:index/randomBytes:RandomBytes.
type Bytes struct{}

func check(token string, fields map[resource.PropertyKey]field, news resource.PropertyMap) (resource.PropertyMap, []*pulumirpc.CheckFailure) {
	var failures []*pulumirpc.CheckFailure
	for _, k := range news.StableKeys() {
		if strings.HasPrefix(string(k), "__") {
			continue
		}
		f, ok := fields[k]
		if !ok || !f.implement {
			failures = append(failures, &pulumirpc.CheckFailure{Property: string(k), Reason: fmt.Sprintf(
				"the hx-backup stand-in of pulumi-resource-random does not implement %q of %s", k, token)})
			continue
		}
		v := news[k]
		if v.ContainsUnknowns() || v.IsNull() {
			continue
		}
		if v.IsSecret() {
			v = v.SecretValue().Element
		}
		okType := map[string]bool{"number": v.IsNumber(), "bool": v.IsBool(), "string": v.IsString(), "map": v.IsObject()}[f.kind]
		if !okType {
			failures = append(failures, &pulumirpc.CheckFailure{Property: string(k), Reason: fmt.Sprintf("%s must be a %s", k, f.kind)})
		}
	}
	for k, f := range fields {
		if v, ok := news[k]; f.required && (!ok || v.IsNull()) {
			failures = append(failures, &pulumirpc.CheckFailure{Property: string(k), Reason: fmt.Sprintf("Missing required argument: %s", k)})
		}
	}
	if l, ok := news["length"]; ok && l.IsNumber() && l.NumberValue() < 1 {
		failures = append(failures, &pulumirpc.CheckFailure{Property: "length", Reason: fmt.Sprintf("length must be at least 1, got %v", l.NumberValue())})
	}
	return news, failures
}

// withDefaults fills in every unset field that has a default, as the outputs carry them. `number` is the
// deprecated name of `numeric`: one set alone decides both.
func withDefaults(fields map[resource.PropertyKey]field, inputs resource.PropertyMap) resource.PropertyMap {
	out := inputs.Copy()
	if _, isPassword := fields["numeric"]; isPassword {
		number, hasNumber := out["number"]
		numeric, hasNumeric := out["numeric"]
		switch {
		case hasNumber && !number.IsNull() && (!hasNumeric || numeric.IsNull()):
			out["numeric"] = number
		case hasNumeric && !numeric.IsNull() && (!hasNumber || number.IsNull()):
			out["number"] = numeric
		}
	}
	for k, f := range fields {
		if v, ok := out[k]; f.def.V != nil && (!ok || v.IsNull()) {
			out[k] = f.def
		}
	}
	return out
}

// diff: any change of an input replaces the resource.
func diff(req serve.DiffRequest) *pulumirpc.DiffResponse {
	news := req.News.Copy()
	for k := range news {
		if strings.HasPrefix(string(k), "__") {
			delete(news, k)
		}
	}
	olds := req.OldInput
	if !req.HasOldInputs {
		olds = req.State
	}
	return serve.DetailedDiff(olds, news, func(string) bool { return true })
}

func (Password) Check(_ context.Context, req serve.CheckRequest) (resource.PropertyMap, []*pulumirpc.CheckFailure, error) {
	news, failures := check(PasswordToken, passwordFields, req.News)
	if len(failures) == 0 && !news.ContainsUnknowns() {
		p := passwordParams(withDefaults(passwordFields, news))
		if min := p.minUpper + p.minLower + p.minNumeric + p.minSpecial; min > p.length {
			failures = append(failures, &pulumirpc.CheckFailure{Property: "length", Reason: fmt.Sprintf(
				"length (%d) must be at least the sum of minUpper, minLower, minNumeric and minSpecial (%d)", p.length, min)})
		}
	}
	return news, failures, nil
}

func (Password) Diff(_ context.Context, req serve.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return diff(req), nil
}

// Create draws the password; a preview leaves the result and its hash unknown.
func (Password) Create(_ context.Context, req serve.CreateRequest) (string, resource.PropertyMap, error) {
	outs := withDefaults(passwordFields, req.Inputs)
	if req.Preview {
		outs["result"] = resource.MakeComputed(resource.NewStringProperty(""))
		outs["bcryptHash"] = resource.MakeComputed(resource.NewStringProperty(""))
		return "none", outs, nil
	}
	result, err := passwordParams(outs).draw()
	if err != nil {
		return "", nil, err
	}
	// bcrypt reads at most 72 bytes; upstream hashes those and refuses nothing longer.
	hashed := []byte(result)
	if len(hashed) > 72 {
		hashed = hashed[:72]
	}
	hash, err := bcrypt.GenerateFromPassword(hashed, bcrypt.DefaultCost)
	if err != nil {
		return "", nil, err
	}
	outs["result"] = resource.MakeSecret(resource.NewStringProperty(result))
	outs["bcryptHash"] = resource.MakeSecret(resource.NewStringProperty(string(hash)))
	return "none", outs, nil
}

func (Password) Read(_ context.Context, req serve.ReadRequest) (string, resource.PropertyMap, resource.PropertyMap, error) {
	return req.ID, req.State, req.Inputs, nil
}

// Update only ever changes nothing that the result depends on: every such input replaces instead.
func (Password) Update(_ context.Context, req serve.UpdateRequest) (resource.PropertyMap, error) {
	outs := req.State.Copy()
	for k, v := range withDefaults(passwordFields, req.News) {
		outs[k] = v
	}
	return outs, nil
}

func (Password) Delete(context.Context, serve.DeleteRequest) error { return nil }

type params struct {
	length, minUpper, minLower, minNumeric, minSpecial int
	upper, lower, numeric, special                     bool
	overrideSpecial                                    string
}

func passwordParams(m resource.PropertyMap) params {
	num := func(k resource.PropertyKey) int {
		if v := m[k]; v.IsNumber() {
			return int(v.NumberValue())
		}
		return 0
	}
	flag := func(k resource.PropertyKey) bool { v := m[k]; return !v.IsBool() || v.BoolValue() }
	p := params{
		length: num("length"), minUpper: num("minUpper"), minLower: num("minLower"), minNumeric: num("minNumeric"), minSpecial: num("minSpecial"),
		upper: flag("upper"), lower: flag("lower"), numeric: flag("numeric") && flag("number"), special: flag("special"),
	}
	if v := m["overrideSpecial"]; v.IsString() {
		p.overrideSpecial = v.StringValue()
	}
	return p
}

const (
	upperChars   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lowerChars   = "abcdefghijklmnopqrstuvwxyz"
	numericChars = "0123456789"
	specialChars = "!@#$%&*()-_=+[]{}<>:?"
)

// draw: each class's minimum first, the rest from every enabled class, then a uniform shuffle; every
// choice from crypto/rand.
func (p params) draw() (string, error) {
	special := specialChars
	if p.overrideSpecial != "" {
		special = p.overrideSpecial
	}
	var all string
	for _, c := range []struct {
		on    bool
		chars string
	}{{p.upper, upperChars}, {p.lower, lowerChars}, {p.numeric, numericChars}, {p.special, special}} {
		if c.on {
			all += c.chars
		}
	}
	out := make([]byte, 0, p.length)
	for _, m := range []struct {
		chars string
		count int
	}{{upperChars, p.minUpper}, {lowerChars, p.minLower}, {numericChars, p.minNumeric}, {special, p.minSpecial}} {
		for i := 0; i < m.count; i++ {
			c, err := pick(m.chars)
			if err != nil {
				return "", err
			}
			out = append(out, c)
		}
	}
	if all == "" && len(out) < p.length {
		return "", fmt.Errorf("no character class is enabled (upper, lower, numeric, special)")
	}
	for len(out) < p.length {
		c, err := pick(all)
		if err != nil {
			return "", err
		}
		out = append(out, c)
	}
	for i := len(out) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", err
		}
		out[i], out[j.Int64()] = out[j.Int64()], out[i]
	}
	return string(out), nil
}

func pick(chars string) (byte, error) {
	i, err := rand.Int(rand.Reader, big.NewInt(int64(len(chars))))
	if err != nil {
		return 0, err
	}
	return chars[i.Int64()], nil
}

func (Bytes) Check(_ context.Context, req serve.CheckRequest) (resource.PropertyMap, []*pulumirpc.CheckFailure, error) {
	news, failures := check(BytesToken, bytesFields, req.News)
	return news, failures, nil
}

func (Bytes) Diff(_ context.Context, req serve.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return diff(req), nil
}

// Create draws the bytes. Its ID is their base64, as upstream's is: IDs are never secret, so the bytes
// sit in plain text in the state whatever the outputs' secrecy.
func (Bytes) Create(_ context.Context, req serve.CreateRequest) (string, resource.PropertyMap, error) {
	outs := req.Inputs.Copy()
	if req.Preview {
		outs["base64"] = resource.MakeComputed(resource.NewStringProperty(""))
		outs["hex"] = resource.MakeComputed(resource.NewStringProperty(""))
		return "", outs, nil
	}
	length := 0
	if v := outs["length"]; v.IsNumber() {
		length = int(v.NumberValue())
	}
	buf := make([]byte, length)
	if _, err := rand.Read(buf); err != nil {
		return "", nil, err
	}
	encoded := base64.StdEncoding.EncodeToString(buf)
	outs["base64"] = resource.MakeSecret(resource.NewStringProperty(encoded))
	outs["hex"] = resource.MakeSecret(resource.NewStringProperty(hex.EncodeToString(buf)))
	return encoded, outs, nil
}

func (Bytes) Read(_ context.Context, req serve.ReadRequest) (string, resource.PropertyMap, resource.PropertyMap, error) {
	return req.ID, req.State, req.Inputs, nil
}

func (Bytes) Update(_ context.Context, req serve.UpdateRequest) (resource.PropertyMap, error) {
	outs := req.State.Copy()
	for k, v := range req.News {
		outs[k] = v
	}
	return outs, nil
}

func (Bytes) Delete(context.Context, serve.DeleteRequest) error { return nil }
