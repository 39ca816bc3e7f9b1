//go:build linux || darwin

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// awsPath finds the aws CLI: $DFS_AWS_CLI, the PATH, or the one the
// machine image keeps in its Python (~/.pyenv/shims).
func awsPath(t *testing.T) string {
	t.Helper()
	home, _ := os.UserHomeDir()
	for _, p := range []string{os.Getenv("DFS_AWS_CLI"), "aws", filepath.Join(home, ".pyenv", "shims", "aws")} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("S3 test: no aws CLI found (set DFS_AWS_CLI, or install Debian's awscli); .ci/run installs it when the machine has none")
	return ""
}

// The aws CLI against a real dfs server's S3 API, with a key made by
// dfs key create: make a bucket, upload (the CLI sends its CRC32 in a
// trailer), list, read back byte for byte, check the stored checksum,
// see the object as a file with dfs ls, delete, and remove the bucket.
func TestS3WithAwsCLI(t *testing.T) {
	skipShort(t)
	aws := awsPath(t)
	c := newCluster(t, clusterSpec{topo: topoServer})
	key := decodeJSON[struct {
		ID     string `json:"access_key_id"`
		Secret string `json:"secret_access_key"`
	}](t, c.mustDFS(t, "key", "create", "--json", "aws-cli"))
	dir := t.TempDir()
	// Single-part uploads for now: the CLI goes multipart past 8 MiB.
	conf := filepath.Join(dir, "aws.conf")
	os.WriteFile(conf, []byte("[default]\nregion = us-east-1\ns3 =\n    multipart_threshold = 1GB\n"), 0o600)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(aws, append([]string{"--endpoint-url", "http://" + c.s3}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+key.ID, "AWS_SECRET_ACCESS_KEY="+key.Secret,
			"AWS_CONFIG_FILE="+conf, "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	local, sum := randomFile(t, dir, "data.bin", 6<<20)
	run("s3", "mb", "s3://aws-e2e")
	run("s3", "cp", local, "s3://aws-e2e/dir/data.bin")
	if out := run("s3", "ls", "s3://aws-e2e/dir/"); !strings.Contains(out, "data.bin") || !strings.Contains(out, "6291456") {
		t.Fatalf("aws s3 ls: %s", out)
	}
	back := filepath.Join(dir, "back.bin")
	run("s3", "cp", "s3://aws-e2e/dir/data.bin", back)
	if got, _ := fileSHA(t, back); got != sum {
		t.Fatalf("read back %s, want %s", got, sum)
	}
	var head struct {
		ContentLength int64
		ETag          string
		ChecksumCRC32 string
	}
	if err := json.Unmarshal([]byte(run("s3api", "head-object", "--bucket", "aws-e2e", "--key", "dir/data.bin", "--checksum-mode", "ENABLED")), &head); err != nil {
		t.Fatal(err)
	}
	if head.ContentLength != 6<<20 || len(strings.Trim(head.ETag, `"`)) != 32 || head.ChecksumCRC32 == "" {
		t.Fatalf("head-object: %+v; want the size, an MD5 ETag and the CRC32 the CLI sent", head)
	}
	if r := c.mustDFS(t, "ls", "aws-e2e/dir/"); !strings.Contains(r.stdout, "aws-e2e/dir/data.bin") {
		t.Fatalf("dfs ls of the bucket: %s", r)
	}
	run("s3", "rm", "s3://aws-e2e/dir/data.bin")
	run("s3", "rb", "s3://aws-e2e")
	if r := c.dfs(t, "stat", "aws-e2e/dir/data.bin"); r.code != 3 {
		t.Fatalf("stat after aws s3 rm: %s", r)
	}
}
