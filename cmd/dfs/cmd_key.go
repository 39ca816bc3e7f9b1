package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dfs-store/dfs/client"
)

// registerOperatorCertsDir adds --certs-dir to an access command: on a
// host with a coordinator's or worker's node certificate (or a client
// certificate's directory), the operator acts as admin with it, which is
// how the first key of a multi-host cluster is made.
func (g *globals) registerOperatorCertsDir(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&g.certsDir, "certs-dir", "", "act as admin with this directory's node certificate (a coordinator's or worker's) instead of an access key")
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Create, list and delete access keys (admin)",
		Long: `An access key (an id and a secret) is how a user proves who they are to the
cluster, on every interface: the dfs command and Go SDK, the REST API and web
UI, and S3. A key may do what it was granted per bucket (dfs bucket allow);
an admin key may do everything.`,
	}
	var admin, asJSON bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Make an access key and print its id and secret",
		Long: `create makes an access key named NAME and prints its id and secret. The secret
is shown this once: keep it. Give the key rights with 'dfs bucket allow', or
make it an admin key with --admin.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			k, err := c.CreateKey(cmd.Context(), args[0], admin)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(k)
			}
			fmt.Printf("access key id:     %s\nsecret access key: %s\n", k.ID, k.Secret)
			fmt.Fprintln(os.Stderr, "The secret is shown this once. Use the key with DFS_ACCESS_KEY_ID and DFS_SECRET_ACCESS_KEY, or in a client configuration.")
			return nil
		},
	}
	create.Flags().BoolVar(&admin, "admin", false, "an admin key: every bucket, cluster operations, keys")
	create.Flags().BoolVar(&asJSON, "json", false, `print {"access_key_id", "secret_access_key", ...}`)

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the access keys and their grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			keys, err := c.ListKeys(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(keys)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tCREATED\tRIGHTS")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Created.Format("2006-01-02 15:04"), rightsSummary(k))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	del := &cobra.Command{
		Use:   "delete KEY_ID...",
		Short: "Delete access keys: requests made with them fail from then on",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			for _, id := range args {
				if err := c.DeleteKey(cmd.Context(), id); err != nil {
					return err
				}
			}
			return nil
		},
	}
	var importAdmin bool
	var secretFile string
	imp := &cobra.Command{
		Use:   "import NAME KEY_ID --secret-file FILE",
		Short: "Store an access key made elsewhere, with its id and secret",
		Long: `import stores an access key that exists already (another store's, when moving
to dfs) under NAME, with its id and the secret read from --secret-file (a file,
or - for standard input; a secret never goes on the command line, which shows
in ps). The key then holds no rights until granted some, or --admin.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if secretFile == "" {
				return usagef("--secret-file is required: a file holding the secret, or - for standard input")
			}
			var b []byte
			var err error
			if secretFile == "-" {
				b, err = io.ReadAll(io.LimitReader(os.Stdin, 4096))
			} else {
				b, err = os.ReadFile(secretFile)
			}
			if err != nil {
				return usagef("--secret-file: %v", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			k, err := c.ImportKey(cmd.Context(), args[0], importAdmin, args[1], strings.TrimSpace(string(b)))
			if err != nil {
				return err
			}
			fmt.Printf("imported %s (%s)\n", k.ID, k.Name)
			return nil
		},
	}
	imp.Flags().BoolVar(&importAdmin, "admin", false, "an admin key: every bucket, cluster operations, keys")
	imp.Flags().StringVar(&secretFile, "secret-file", "", "file holding the secret access key (- for standard input)")
	cmd.AddCommand(create, imp, list, del)
	g.registerOperatorCertsDir(cmd)
	return cmd
}

// rightsSummary says what a key may do: "admin", or its grants.
func rightsSummary(k client.AccessKey) string {
	if k.Admin {
		return "admin"
	}
	var parts []string
	for _, b := range k.Buckets() {
		parts = append(parts, b+":"+k.Grants[b])
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func newBucketCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bucket",
		Short: "Make, list and delete buckets; grant and revoke keys' rights on them",
		Long: `A bucket is the first segment of a path: "photos" for photos/2024/a.jpg. A key
may read (stat, list, get), write (put, rm) or own a bucket (grant and revoke
others' rights on it, and read and write). An admin, or the bucket's owner,
grants and revokes.`,
	}
	var read, write, owner bool
	flags := func(c *cobra.Command, verb string) {
		c.Flags().BoolVar(&read, "read", false, verb+" the read right: stat, list and get")
		c.Flags().BoolVar(&write, "write", false, verb+" the write right: put and rm")
		c.Flags().BoolVar(&owner, "owner", false, verb+" the owner right: grant and revoke others' rights")
	}
	chosen := func() uint32 {
		var r uint32
		if read {
			r |= client.RightRead
		}
		if write {
			r |= client.RightWrite
		}
		if owner {
			r |= client.RightOwner
		}
		return r
	}
	allow := &cobra.Command{
		Use:   "allow BUCKET KEY_ID",
		Short: "Grant a key rights on a bucket (added to those it holds)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			want := chosen()
			if want == 0 {
				return usagef("say which rights: --read, --write, --owner")
			}
			return setGrant(cmd, g, args[0], args[1], want, 0)
		},
	}
	flags(allow, "grant")
	deny := &cobra.Command{
		Use:   "deny BUCKET KEY_ID",
		Short: "Revoke a key's rights on a bucket (all of them unless told which)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			drop := chosen()
			if drop == 0 {
				drop = client.RightRead | client.RightWrite | client.RightOwner
			}
			return setGrant(cmd, g, args[0], args[1], 0, drop)
		},
	}
	flags(deny, "revoke")
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Make a bucket, owned by the key that makes it",
		Long: `create makes a bucket: 3 to 63 lower-case letters, digits, '.' and '-' (S3's
rules). The key that makes it owns it; no other key may touch it until granted.
A name that holds files already, or that another made, is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			b, err := c.CreateBucket(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Printf("bucket %s created\n", b.Name)
			return nil
		},
	}
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the buckets made on purpose that the key may read",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			bs, err := c.ListBuckets(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(bs)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tOWNER\tCREATED")
			for _, b := range bs {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", b.Name, orDash(b.Owner), b.Created.Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an empty bucket and every key's rights on it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return c.DeleteBucket(cmd.Context(), args[0])
		},
	}
	cmd.AddCommand(allow, deny, create, list, del, newBucketVersioningCmd(g))
	g.registerOperatorCertsDir(cmd)
	return cmd
}

// setGrant adds rights allow and removes rights deny from those key id
// holds on bucket.
func setGrant(cmd *cobra.Command, g *globals, bucket, id string, allow, deny uint32) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	defer c.Close()
	k, err := c.SetGrant(cmd.Context(), id, bucket, allow, deny)
	if err != nil {
		return err
	}
	fmt.Printf("%s (%s) on %s: %s\n", k.ID, k.Name, bucket, orNone(k.Grants[bucket]))
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func newWhoAmICmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Say which access key the client uses and what it may do",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			k, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(k)
			}
			who := k.ID + " (" + k.Name + ")"
			if k.Certificate {
				who = "certificate " + k.Name
			}
			fmt.Printf("%s: %s\n", who, rightsSummary(k))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
