//go:build linux || darwin

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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

// toolPath finds an S3 tool on the PATH (.ci/run installs Debian's).
func toolPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("S3 test: %s is not installed (.ci/run installs Debian's %s)", name, name)
	}
	return p
}

// s3Key is an access key made with dfs key create.
type s3Key struct {
	ID     string `json:"access_key_id"`
	Secret string `json:"secret_access_key"`
}

// The S3 tools people use, each against one real dfs server with a key
// made by dfs key create, as its own user would run it.
func TestS3Clients(t *testing.T) {
	skipShort(t)
	c := newCluster(t, clusterSpec{topo: topoServer})
	newKey := func(name string) s3Key {
		return decodeJSON[s3Key](t, c.mustDFS(t, "key", "create", "--json", name))
	}
	t.Run("aws", func(t *testing.T) { testAwsCLI(t, c, newKey("aws-cli")) })
	t.Run("boto3", func(t *testing.T) { testBoto3(t, c, newKey("boto3")) })
	t.Run("rclone", func(t *testing.T) { testRclone(t, c, newKey("rclone")) })
	t.Run("s3cmd", func(t *testing.T) { testS3cmd(t, c, newKey("s3cmd")) })
	t.Run("restic", func(t *testing.T) { testRestic(t, c, newKey("restic")) })
}

// runTool runs a tool with env added to the test's environment (an entry
// "-NAME" removes NAME), and fails the test with its output if it fails.
func runTool(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = os.Environ()
	for _, e := range env {
		if drop, ok := strings.CutPrefix(e, "-"); ok {
			cmd.Env = slices.DeleteFunc(cmd.Env, func(v string) bool { return strings.HasPrefix(v, drop+"=") })
			continue
		}
		cmd.Env = append(cmd.Env, e)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeTree writes a small tree of files under dir and returns their
// SHA-256s by relative path.
func makeTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for i, rel := range []string{"a.txt", "sub/b.bin", "sub/deeper/c.bin", "sub/deeper/d e.txt", "z.bin"} {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		_, sums[rel] = randomFile(t, filepath.Dir(p), filepath.Base(p), int64(1000+i*300<<10))
	}
	return sums
}

// sameTree checks that dir holds exactly the files sums names, with those
// SHA-256s.
func sameTree(t *testing.T, dir string, sums map[string]string) {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		n++
		if got, _ := fileSHA(t, p); got != sums[filepath.ToSlash(rel)] {
			t.Errorf("%s: sha256 %s, want %s", rel, got, sums[filepath.ToSlash(rel)])
		}
		return nil
	})
	if n != len(sums) {
		t.Errorf("%s holds %d files, want %d", dir, n, len(sums))
	}
}

// The aws CLI: a bucket made, a 6 MiB file put in one part (its CRC32 in a
// trailer) and a 100 MiB one in parts, both read back byte for byte; the
// stored checksum and the multipart ETag; a tree synced up and down, a
// second sync sending only what changed; s3api calls; the objects seen as
// files with dfs ls; deletes.
func testAwsCLI(t *testing.T, c *cluster, key s3Key) {
	aws := awsPath(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "aws.conf")
	os.WriteFile(conf, []byte("[default]\nregion = us-east-1\n"), 0o600)
	env := []string{"AWS_ACCESS_KEY_ID=" + key.ID, "AWS_SECRET_ACCESS_KEY=" + key.Secret,
		"AWS_CONFIG_FILE=" + conf, "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "none"), "HOME=" + dir}
	run := func(args ...string) string {
		t.Helper()
		return runTool(t, env, aws, append([]string{"--endpoint-url", "http://" + c.s3}, args...)...)
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

	// 100 MiB: the CLI sends 8 MiB parts, several at once.
	big, bigSum := randomFile(t, dir, "big.bin", 100<<20)
	run("s3", "cp", big, "s3://aws-e2e/big.bin")
	run("s3", "cp", "s3://aws-e2e/big.bin", filepath.Join(dir, "big.back"))
	if got, _ := fileSHA(t, filepath.Join(dir, "big.back")); got != bigSum {
		t.Fatalf("100 MiB read back %s, want %s", got, bigSum)
	}
	if err := json.Unmarshal([]byte(run("s3api", "head-object", "--bucket", "aws-e2e", "--key", "big.bin")), &head); err != nil {
		t.Fatal(err)
	}
	if head.ContentLength != 100<<20 || !strings.HasSuffix(strings.Trim(head.ETag, `"`), "-13") {
		t.Fatalf("head-object of the multipart upload: %+v; want 13 parts in the ETag", head)
	}

	// sync up, change one file, sync again, sync down.
	tree := filepath.Join(dir, "tree")
	sums := makeTree(t, tree)
	run("s3", "sync", tree, "s3://aws-e2e/tree")
	time.Sleep(1100 * time.Millisecond) // sync compares modification times at second precision: the condition under test
	_, sums["a.txt"] = randomFile(t, tree, "a.txt", 2000)
	out := run("s3", "sync", tree, "s3://aws-e2e/tree")
	if n := strings.Count(out, "upload:"); n != 1 || !strings.Contains(out, "a.txt") {
		t.Fatalf("second sync uploaded %d files, want only a.txt:\n%s", n, out)
	}
	down := filepath.Join(dir, "down")
	run("s3", "sync", "s3://aws-e2e/tree", down)
	sameTree(t, down, sums)

	// s3api.
	run("s3api", "put-object", "--bucket", "aws-e2e", "--key", "meta.txt", "--body", filepath.Join(tree, "a.txt"),
		"--metadata", "color=blue", "--content-type", "text/x-test")
	var meta struct {
		Metadata    map[string]string
		ContentType string
	}
	json.Unmarshal([]byte(run("s3api", "head-object", "--bucket", "aws-e2e", "--key", "meta.txt")), &meta)
	if meta.Metadata["color"] != "blue" || meta.ContentType != "text/x-test" {
		t.Fatalf("head-object after put-object with metadata: %+v", meta)
	}
	run("s3api", "copy-object", "--bucket", "aws-e2e", "--key", "meta-copy.txt", "--copy-source", "aws-e2e/meta.txt")
	var list struct{ Contents []struct{ Key string } }
	json.Unmarshal([]byte(run("s3api", "list-objects-v2", "--bucket", "aws-e2e", "--prefix", "meta")), &list)
	if len(list.Contents) != 2 {
		t.Fatalf("list-objects-v2 --prefix meta: %+v", list)
	}
	var mp struct{ UploadId string }
	json.Unmarshal([]byte(run("s3api", "create-multipart-upload", "--bucket", "aws-e2e", "--key", "left.bin")), &mp)
	var ups struct{ Uploads []struct{ UploadId string } }
	json.Unmarshal([]byte(run("s3api", "list-multipart-uploads", "--bucket", "aws-e2e")), &ups)
	if len(ups.Uploads) != 1 || ups.Uploads[0].UploadId != mp.UploadId {
		t.Fatalf("list-multipart-uploads: %+v, want %s", ups, mp.UploadId)
	}
	run("s3api", "abort-multipart-upload", "--bucket", "aws-e2e", "--key", "left.bin", "--upload-id", mp.UploadId)
	run("s3api", "delete-objects", "--bucket", "aws-e2e", "--delete", `{"Objects":[{"Key":"meta.txt"},{"Key":"meta-copy.txt"}],"Quiet":true}`)

	if r := c.mustDFS(t, "ls", "aws-e2e/dir/"); !strings.Contains(r.stdout, "aws-e2e/dir/data.bin") {
		t.Fatalf("dfs ls of the bucket: %s", r)
	}
	run("s3", "rm", "--recursive", "s3://aws-e2e/")
	run("s3", "rb", "s3://aws-e2e")
	if r := c.dfs(t, "stat", "aws-e2e/dir/data.bin"); r.code != 3 {
		t.Fatalf("stat after aws s3 rm: %s", r)
	}
}

// boto3, from the machine image's Python: a multipart upload_file and
// download_file, put/get with metadata, a paginated listing, and a
// presigned GET fetched with curl.
func testBoto3(t *testing.T, c *cluster, key s3Key) {
	home, _ := os.UserHomeDir()
	py := filepath.Join(home, ".pyenv", "shims", "python3")
	if out, err := exec.Command(py, "-c", "import boto3").CombinedOutput(); err != nil {
		py = toolPath(t, "python3")
		if out, err = exec.Command(py, "-c", "import boto3").CombinedOutput(); err != nil {
			t.Fatalf("S3 test: no Python with boto3 (the machine image's, or Debian's python3-boto3): %s", out)
		}
	}
	dir := t.TempDir()
	src, sum := randomFile(t, dir, "up.bin", 12<<20)
	script := `
import sys, boto3, json
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
endpoint, src, dst = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(signature_version="s3v4"))
s3.create_bucket(Bucket="boto")
cfg = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
s3.upload_file(src, "boto", "x/up.bin", Config=cfg)
s3.download_file("boto", "x/up.bin", dst, Config=cfg)
s3.put_object(Bucket="boto", Key="x/small.txt", Body=b"small", Metadata={"k": "v"}, ContentType="text/x-boto")
h = s3.head_object(Bucket="boto", Key="x/small.txt")
assert h["Metadata"] == {"k": "v"} and h["ContentType"] == "text/x-boto", h
for i in range(5):
    s3.put_object(Bucket="boto", Key="p/%d" % i, Body=b"p")
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="boto", Prefix="p/", PaginationConfig={"PageSize": 2}):
    keys += [o["Key"] for o in page.get("Contents", [])]
assert keys == ["p/%d" % i for i in range(5)], keys
url = s3.generate_presigned_url("get_object", Params={"Bucket": "boto", "Key": "x/small.txt"}, ExpiresIn=60)
# A client with no signature version configured presigns with Signature
# Version 2.
plain = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
url2 = plain.generate_presigned_url("get_object", Params={"Bucket": "boto", "Key": "x/small.txt"}, ExpiresIn=60)
up = s3.head_object(Bucket="boto", Key="x/up.bin")
print(json.dumps({"url": url, "url2": url2, "etag": up["ETag"]}))
`
	out := runTool(t, []string{"AWS_ACCESS_KEY_ID=" + key.ID, "AWS_SECRET_ACCESS_KEY=" + key.Secret, "HOME=" + dir},
		py, "-c", script, "http://"+c.s3, src, filepath.Join(dir, "down.bin"))
	if got, _ := fileSHA(t, filepath.Join(dir, "down.bin")); got != sum {
		t.Fatalf("boto3 download %s, want %s", got, sum)
	}
	var res struct{ URL, URL2, ETag string }
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("boto3 script said: %s", out)
	}
	if !strings.HasSuffix(strings.Trim(res.ETag, `"`), "-3") {
		t.Fatalf("ETag of a 12 MiB upload in 5 MiB parts: %s, want 3 parts", res.ETag)
	}
	for _, u := range []string{res.URL, res.URL2} {
		if got := runTool(t, nil, toolPath(t, "curl"), "-sf", u); got != "small" {
			t.Fatalf("curl of the presigned URL %s: %q", u, got)
		}
		if out, err := exec.Command("curl", "-sf", strings.Replace(u, "Signature=", "Signature=0", 1)).CombinedOutput(); err == nil {
			t.Fatalf("a tampered presigned URL was served: %s", out)
		}
	}
	if !strings.Contains(res.URL2, "AWSAccessKeyId=") {
		t.Fatalf("boto3's default presigned URL is not Signature Version 2 (%s): the test no longer tests it", res.URL2)
	}
}

// rclone: sync a tree up, check it (sizes and MD5s), change it, sync
// again (the removed file is deleted), and copy it back.
func testRclone(t *testing.T, c *cluster, key s3Key) {
	rclone := toolPath(t, "rclone")
	dir := t.TempDir()
	env := []string{"RCLONE_CONFIG=" + filepath.Join(dir, "none.conf"), "RCLONE_CONFIG_DFS_TYPE=s3", "RCLONE_CONFIG_DFS_PROVIDER=Other",
		"RCLONE_CONFIG_DFS_ACCESS_KEY_ID=" + key.ID, "RCLONE_CONFIG_DFS_SECRET_ACCESS_KEY=" + key.Secret,
		"RCLONE_CONFIG_DFS_ENDPOINT=http://" + c.s3, "RCLONE_CONFIG_DFS_REGION=us-east-1", "HOME=" + dir,
		"-AWS_CA_BUNDLE"} // a CA bundle in the environment stops rclone over plain HTTP
	tree := filepath.Join(dir, "tree")
	sums := makeTree(t, tree)
	runTool(t, env, rclone, "mkdir", "dfs:rclone-e2e")
	runTool(t, env, rclone, "sync", tree, "dfs:rclone-e2e/tree")
	runTool(t, env, rclone, "check", tree, "dfs:rclone-e2e/tree")
	os.Remove(filepath.Join(tree, "z.bin"))
	delete(sums, "z.bin")
	_, sums["new.bin"] = randomFile(t, tree, "new.bin", 3<<20)
	runTool(t, env, rclone, "sync", tree, "dfs:rclone-e2e/tree")
	runTool(t, env, rclone, "check", tree, "dfs:rclone-e2e/tree")
	if r := c.dfs(t, "stat", "rclone-e2e/tree/z.bin"); r.code != 3 {
		t.Fatalf("a file rclone sync removed is still there: %s", r)
	}
	back := filepath.Join(dir, "back")
	runTool(t, env, rclone, "copy", "dfs:rclone-e2e/tree", back)
	sameTree(t, back, sums)
}

// s3cmd: make a bucket, put a file large enough for its multipart upload
// (15 MiB parts), list, get it back, delete, remove the bucket.
func testS3cmd(t *testing.T, c *cluster, key s3Key) {
	s3cmd := toolPath(t, "s3cmd")
	dir := t.TempDir()
	conf := filepath.Join(dir, "s3cfg")
	os.WriteFile(conf, []byte(fmt.Sprintf("[default]\naccess_key = %s\nsecret_key = %s\nhost_base = %s\nhost_bucket = %s\nuse_https = False\nbucket_location = us-east-1\nsignature_v2 = False\n",
		key.ID, key.Secret, c.s3, c.s3)), 0o600)
	run := func(args ...string) string {
		t.Helper()
		return runTool(t, []string{"HOME=" + dir}, s3cmd, append([]string{"-c", conf}, args...)...)
	}
	src, sum := randomFile(t, dir, "f.bin", 20<<20)
	run("mb", "s3://s3cmd-e2e")
	run("put", src, "s3://s3cmd-e2e/d/f.bin")
	if out := run("ls", "s3://s3cmd-e2e/d/"); !strings.Contains(out, "s3://s3cmd-e2e/d/f.bin") {
		t.Fatalf("s3cmd ls: %s", out)
	}
	run("get", "s3://s3cmd-e2e/d/f.bin", filepath.Join(dir, "back.bin"))
	if got, _ := fileSHA(t, filepath.Join(dir, "back.bin")); got != sum {
		t.Fatalf("s3cmd get %s, want %s", got, sum)
	}
	run("del", "s3://s3cmd-e2e/d/f.bin")
	run("rb", "s3://s3cmd-e2e")
}

// restic: a repository in a bucket; back a tree up twice (the second
// finds nothing new), check the repository, restore it.
func testRestic(t *testing.T, c *cluster, key s3Key) {
	restic := toolPath(t, "restic")
	dir := t.TempDir()
	env := []string{"AWS_ACCESS_KEY_ID=" + key.ID, "AWS_SECRET_ACCESS_KEY=" + key.Secret, "RESTIC_PASSWORD=e2e-password",
		"RESTIC_REPOSITORY=s3:http://" + c.s3 + "/restic-e2e/repo", "HOME=" + dir, "XDG_CACHE_HOME=" + filepath.Join(dir, "cache")}
	tree := filepath.Join(dir, "tree")
	sums := makeTree(t, tree)
	runTool(t, env, restic, "init")
	runTool(t, env, restic, "backup", "--host", "e2e", tree)
	if out := runTool(t, env, restic, "backup", "--host", "e2e", tree); !strings.Contains(out, "Added to the repository: 0 B") {
		t.Fatalf("a second backup of the same tree added data:\n%s", out)
	}
	runTool(t, env, restic, "check", "--read-data")
	restored := filepath.Join(dir, "restored")
	runTool(t, env, restic, "restore", "latest", "--target", restored)
	sameTree(t, filepath.Join(restored, tree), sums)
}
