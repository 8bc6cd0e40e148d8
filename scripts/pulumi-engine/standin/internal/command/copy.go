package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pkg/sftp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"

	"hx-backup/pulumi-engine/standin/internal/serve"
)

// CopyToRemoteToken is upstream's resource that copies a local asset or archive to a host over SFTP.
const CopyToRemoteToken = "command:remote:CopyToRemote"

var copyInputs = map[resource.PropertyKey]bool{"connection": true, "triggers": true, "source": true, "remotePath": true}

// CopyToRemote is the resource: the inputs are its outputs; create and update copy, delete leaves the copy.
type CopyToRemote struct{}

// Check: a connection (defaulted and secret, as for Command), a source that is a path-based file asset, a
// text asset or a path archive, and a remote path.
func (CopyToRemote) Check(_ context.Context, req serve.CheckRequest) (resource.PropertyMap, []*pulumirpc.CheckFailure, error) {
	news := req.News.Copy()
	var failures []*pulumirpc.CheckFailure
	for _, k := range news.StableKeys() {
		if !copyInputs[k] && !strings.HasPrefix(string(k), "__") {
			failures = append(failures, notImplemented(string(k)))
		}
	}
	conn, ok := news["connection"]
	if !ok || conn.IsNull() {
		failures = append(failures, failure("connection", "Missing required field 'connection' on 'remote.CopyToRemoteInputs'"))
	} else {
		conn, failures = checkConnection(conn, "connection", true, failures)
		news["connection"] = makeSecret(conn)
	}
	if v, ok := news["remotePath"]; !ok || v.IsNull() {
		failures = append(failures, failure("remotePath", "Missing required field 'remotePath' on 'remote.CopyToRemoteInputs'"))
	} else if known(v) && !reveal(v).IsString() {
		failures = append(failures, failure("remotePath", "remotePath must be a string"))
	}
	if v, ok := news["triggers"]; ok && known(v) && !reveal(v).IsNull() && !reveal(v).IsArray() {
		failures = append(failures, failure("triggers", "triggers must be a list"))
	}
	src, ok := news["source"]
	switch {
	case !ok || src.IsNull():
		failures = append(failures, failure("source", "Missing required field 'source' on 'remote.CopyToRemoteInputs'"))
	case !known(src):
	case reveal(src).IsAsset():
		if a := reveal(src).AssetValue(); !a.IsPath() && !a.IsText() {
			failures = append(failures, failure("asset", "asset must be a path-based file asset or a text asset"))
		}
	case reveal(src).IsArchive():
		if !reveal(src).ArchiveValue().IsPath() {
			failures = append(failures, failure("archive", "archive must be a path to a file or directory"))
		}
	default:
		failures = append(failures, failure("asset", "either asset or archive must be set"))
	}
	return news, failures, nil
}

// Diff: any changed input is an update; a changed `triggers` is a replacement.
func (CopyToRemote) Diff(_ context.Context, req serve.DiffRequest) (*pulumirpc.DiffResponse, error) {
	news := req.News.Copy()
	for _, ignored := range req.IgnoreChanges {
		if v, ok := req.State[resource.PropertyKey(ignored)]; ok {
			news[resource.PropertyKey(ignored)] = v
		}
	}
	olds := oldInputs(req, copyInputs).Copy()
	for _, m := range []resource.PropertyMap{olds, news} {
		for k := range m {
			if !copyInputs[k] {
				delete(m, k)
			}
		}
	}
	return serve.DetailedDiff(olds, news, func(path string) bool { return path == "triggers" }), nil
}

// Create copies; a preview copies nothing.
func (CopyToRemote) Create(ctx context.Context, req serve.CreateRequest) (string, resource.PropertyMap, error) {
	outs := req.Inputs.Copy()
	if req.Preview {
		return "", outs, nil
	}
	if err := copyToRemote(ctx, outs, req.Log); err != nil {
		return "", nil, err
	}
	id, err := resource.NewUniqueHex("", 8, 0)
	return id, outs, err
}

// Read returns the state as it is: upstream reads nothing back from the host.
func (CopyToRemote) Read(_ context.Context, req serve.ReadRequest) (string, resource.PropertyMap, resource.PropertyMap, error) {
	return req.ID, req.State, req.Inputs, nil
}

// Update copies again only when the source's hash or the remote path changed.
func (CopyToRemote) Update(ctx context.Context, req serve.UpdateRequest) (resource.PropertyMap, error) {
	outs := req.News.Copy()
	if req.Preview {
		return outs, nil
	}
	if sourceHash(outs) != sourceHash(req.State) || plainString(outs["remotePath"]) != plainString(req.State["remotePath"]) {
		if err := copyToRemote(ctx, outs, req.Log); err != nil {
			return nil, err
		}
	}
	return outs, nil
}

// Delete leaves the copy on the host, as upstream does.
func (CopyToRemote) Delete(context.Context, serve.DeleteRequest) error { return nil }

func sourceHash(m resource.PropertyMap) string {
	v := reveal(m["source"])
	switch {
	case v.IsAsset():
		return v.AssetValue().Hash
	case v.IsArchive():
		return v.ArchiveValue().Hash
	}
	return ""
}

func copyToRemote(ctx context.Context, props resource.PropertyMap, log serve.Log) error {
	client, err := dialConnection(ctx, props, log)
	if err != nil {
		return err
	}
	defer client.Close()
	stop := context.AfterFunc(ctx, func() { _ = client.Close() })
	defer stop()
	sftpClient, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if err != nil {
		return err
	}
	defer sftpClient.Close()

	dest := plainString(props["remotePath"])
	src := reveal(props["source"])
	if src.IsAsset() && src.AssetValue().IsText() {
		return copyText(sftpClient, src.AssetValue().Text, dest)
	}
	path := ""
	if src.IsAsset() {
		path = src.AssetValue().Path
	} else {
		path = src.ArchiveValue().Path
	}
	return copyPath(sftpClient, path, dest)
}

// remoteStat: nil, nil when nothing is there.
func remoteStat(c *sftp.Client, path string) (fs.FileInfo, error) {
	info, err := c.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("failed to stat remote path %s: %w", path, err)
	}
	return info, nil
}

func copyText(c *sftp.Client, content, dest string) error {
	info, err := remoteStat(c, dest)
	if err != nil {
		return err
	}
	if info != nil && info.IsDir() {
		return fmt.Errorf("remote path %s is a directory; when using a text asset, remotePath must be a file path", dest)
	}
	if err := c.MkdirAll(filepath.Dir(dest)); err != nil {
		return fmt.Errorf("failed to create parent directories for %s: %w", dest, err)
	}
	f, err := c.Create(dest)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", dest, err)
	}
	defer f.Close()
	if _, err := f.Write([]byte(content)); err != nil {
		return fmt.Errorf("failed to write text content to remote path %s: %w", dest, err)
	}
	return nil
}

// copyPath follows upstream's table: a directory goes to dest/<its name> (its members to dest when the
// source ends in a slash), a file to dest, or into dest when dest is a directory.
func copyPath(c *sftp.Client, source, dest string) error {
	info, err := os.Stat(source)
	if err != nil {
		return err
	}
	destInfo, err := remoteStat(c, dest)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		if destInfo != nil && destInfo.IsDir() {
			dest = filepath.Join(dest, filepath.Base(source))
		} else if destInfo == nil {
			if err := c.MkdirAll(filepath.Dir(dest)); err != nil {
				return fmt.Errorf("failed to create parent directories for %s: %w", dest, err)
			}
		}
		return copyFile(c, source, dest)
	}
	if destInfo == nil {
		if err := c.MkdirAll(dest); err != nil {
			return fmt.Errorf("failed to create remote directory %s: %w", dest, err)
		}
	}
	if !strings.HasSuffix(source, "/") {
		dest = filepath.Join(dest, filepath.Base(source))
		sub, err := remoteStat(c, dest)
		if err != nil {
			return err
		}
		if sub != nil && !sub.IsDir() {
			return fmt.Errorf("remote path %s exists but is not a directory", dest)
		}
		if sub == nil {
			if err := c.Mkdir(dest); err != nil {
				return fmt.Errorf("failed to create remote directory %s: %w", dest, err)
			}
		}
	}
	return fs.WalkDir(os.DirFS(source), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dest, rel)
		if !d.IsDir() {
			return copyFile(c, filepath.Join(source, rel), target)
		}
		info, err := remoteStat(c, target)
		if err != nil {
			return err
		}
		if info == nil {
			if err := c.Mkdir(target); err != nil {
				return fmt.Errorf("failed to create remote directory %s: %w", target, err)
			}
		} else if !info.IsDir() {
			return fmt.Errorf("remote path %s exists but is not a directory", target)
		}
		return nil
	})
}

func copyFile(c *sftp.Client, source, dest string) error {
	local, err := os.Open(source)
	if err != nil {
		return err
	}
	defer local.Close()
	remote, err := c.Create(dest)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", dest, err)
	}
	defer remote.Close()
	if _, err := remote.ReadFrom(local); err != nil {
		return fmt.Errorf("failed to copy file %s to remote path %s: %w", source, dest, err)
	}
	return nil
}
