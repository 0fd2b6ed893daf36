package deploy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	composeloader "github.com/compose-spec/compose-go/v2/loader"
	composetypes "github.com/compose-spec/compose-go/v2/types"
	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
	"github.com/cordon-gw/cordon/proxy"
	"github.com/cordon-gw/cordon/proxy/dnsfilter"
	"github.com/cordon-gw/cordon/reports"
)

var (
	update    = flag.Bool("update", false, "rewrite k8s/configmap.yaml from the files it embeds")
	binaryArg = flag.String("binary", "", "check the deploy files against this cordon binary instead of building ./cmd/cordon")
)

// The defaults of the contract (shared/DESIGN.md) that live in package
// main and so cannot be imported.
const (
	defaultAdminListen = "127.0.0.1:8080"
	defaultDataDir     = "./cordon-data"
	adminPort          = 8080
	binPath            = "/usr/local/bin/cordon"
	configDir          = "/etc/cordon"
	imageDataDir       = "/var/lib/cordon"
	sharedRedisURL     = "redis://redis:6379/0"
)

// configFiles are the cordon configurations in deploy/.
var configFiles = []string{"cordon.yaml", "cordon-edge.yaml", "cordon-control.yaml"}

// configMapFiles are embedded in k8s/configmap.yaml under their names.
var configMapFiles = []string{"cordon-edge.yaml", "cordon-control.yaml", "policy.yaml"}

// binary is the cordon binary TestMain builds; buildErr says why not.
var (
	binary   string
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "cordon-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The binary under test is built by the Dockerfile's own go build
	// step, so the tests check what the image ships.
	binary = filepath.Join(dir, "cordon")
	if *binaryArg != "" {
		binary = *binaryArg
	} else if step, err := dockerBuildStep(); err != nil {
		buildErr = err
	} else {
		cmd := exec.Command("sh", "-c", strings.Replace(step, imageBuildOut, "-o "+binary, 1))
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "VERSION="+testVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%s: %v", step, err)
			fmt.Fprintf(os.Stderr, "deploy: %s: %v\n%s", step, err, out)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	// imageBuildOut is where the Dockerfile's go build step writes.
	imageBuildOut = "-o /out/cordon"
	// testVersion is the VERSION build argument of the test build.
	testVersion = "deploy-test-1"
)

// dockerBuildStep is the go build command of the Dockerfile's RUN steps.
func dockerBuildStep() (string, error) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		return "", err
	}
	for _, in := range dockerInstructions(data) {
		if in.cmd != "RUN" {
			continue
		}
		for _, part := range strings.Split(in.args, "&&") {
			if part = strings.TrimSpace(part); strings.Contains(part, "go build") {
				if !strings.Contains(part, imageBuildOut) {
					return "", fmt.Errorf("Dockerfile:%d: go build step %q does not write %s", in.line, part, imageBuildOut)
				}
				return part, nil
			}
		}
	}
	return "", errors.New("Dockerfile: no go build step")
}

// cordon returns the built binary or fails the test.
func cordon(t *testing.T) string {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

var (
	flagsOnce sync.Once
	flagSet   map[string]bool
	flagsErr  error
)

// serveFlags are the flags `cordon serve --help` lists.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	bin := cordon(t)
	flagsOnce.Do(func() {
		out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
		if err != nil {
			flagsErr = fmt.Errorf("cordon serve --help: %v\n%s", err, out)
			return
		}
		flagSet = map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+--?([A-Za-z][A-Za-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
			flagSet[m[1]] = true
		}
		for _, want := range []string{"config", "check-config", "role", "data-dir"} {
			if !flagSet[want] {
				flagsErr = fmt.Errorf("cordon serve --help does not list --%s:\n%s", want, out)
			}
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	return flagSet
}

// serveArgs checks a `serve` command line against `cordon serve --help`
// and returns its flags with their values ("" for a flag without one).
func serveArgs(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Errorf("%s: command %q, want it to start with serve", where, args)
		return nil
	}
	known := serveFlags(t)
	out := map[string]string{}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: argument %q is not a flag (serve takes no arguments)", where, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !known[name] {
			t.Errorf("%s: flag --%s is not listed by cordon serve --help", where, name)
		}
		if !hasVal && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			val = args[i+1]
			i++
		}
		out[name] = val
	}
	return out
}

// readFile reads a file of deploy/.
func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every document of a YAML stream into a node.
func yamlDocs(name string, data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, len(docs)+1, err)
		}
		docs = append(docs, &n)
	}
}

// yamlFiles lists every .yaml and .yml file under deploy/.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != "." {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestYAMLFilesParse(t *testing.T) {
	files := yamlFiles(t)
	for _, want := range append(append([]string{"compose.yaml", "k8s/kustomization.yaml"}, configFiles...), configMapFiles...) {
		if !slices.Contains(files, want) {
			t.Errorf("deploy/%s is missing", want)
		}
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			docs, err := yamlDocs(name, readFile(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) == 0 {
				t.Fatalf("%s holds no YAML document", name)
			}
			for i, d := range docs {
				if len(d.Content) == 0 || d.Content[0].Kind != yaml.MappingNode {
					t.Errorf("%s: document %d is not a mapping", name, i+1)
				}
			}
		})
	}
}

// config is one cordon configuration file decoded into plain values.
type config struct {
	name string
	m    map[string]any
}

func loadConfig(t *testing.T, name string) config {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(readFile(t, name), &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return config{name: name, m: m}
}

// get walks nested mappings; ok is false when a key is missing.
func get(v any, keys ...string) (any, bool) {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// str is the string at keys, or def when the key is missing.
func (c config) str(t *testing.T, def string, keys ...string) string {
	t.Helper()
	v, ok := get(c.m, keys...)
	if !ok || v == nil {
		return def
	}
	s, ok := v.(string)
	if !ok {
		t.Errorf("%s: %s is %T %v, want a string", c.name, strings.Join(keys, "."), v, v)
	}
	return s
}

// listenPorts are the effective ports of the three listeners.
func (c config) listenPorts(t *testing.T) (proxyPort, dnsPort, admin int) {
	t.Helper()
	return port(t, c.name+" proxy.listen", c.str(t, proxy.Defaults().Listen, "proxy", "listen")),
		port(t, c.name+" dns.listen", c.str(t, dnsfilter.DefaultListen, "dns", "listen")),
		port(t, c.name+" admin.listen", c.str(t, defaultAdminListen, "admin", "listen"))
}

func port(t *testing.T, where, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q: %v", where, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		t.Fatalf("%s: %q has no numeric port", where, addr)
	}
	return n
}

// defaultPorts are the proxy and DNS ports of the rooms' defaults, which
// are the contract's 3128 and 5353.
func defaultPorts(t *testing.T) (proxyPort, dnsPort int) {
	t.Helper()
	proxyPort = port(t, "proxy.Defaults().Listen", proxy.Defaults().Listen)
	dnsPort = port(t, "dnsfilter.DefaultListen", dnsfilter.DefaultListen)
	if proxyPort != 3128 || dnsPort != 5353 {
		t.Errorf("default ports: proxy %d, DNS %d; the contract says 3128 and 5353", proxyPort, dnsPort)
	}
	return proxyPort, dnsPort
}

// mount maps a path a configuration names inside a container (or on a
// systemd host) to where the test provides it.
type mount struct{ at, from string }

// checkConfig runs `cordon serve --check-config` on a copy of file whose
// absolute paths are rewritten by mounts; extra flags follow.
func checkConfig(t *testing.T, name string, data []byte, mounts []mount, extra ...string) (string, error) {
	t.Helper()
	bin := cordon(t)
	s := string(data)
	for _, m := range mounts {
		s = strings.ReplaceAll(s, m.at, m.from)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, filepath.Base(name))
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--check-config", "--config", p}, extra...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CORDON_ADMIN_TOKEN=", "CORDON_REDIS_PASSWORD=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// containerMounts are the mounts of the image, compose and Kubernetes:
// the configuration directory from deploy/, the data volume from a
// temporary directory.
func containerMounts(t *testing.T) []mount {
	t.Helper()
	abs, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return []mount{{configDir + "/", abs + "/"}, {imageDataDir, t.TempDir()}}
}

func TestCheckConfig(t *testing.T) {
	for _, name := range configFiles {
		t.Run(name, func(t *testing.T) {
			out, err := checkConfig(t, name, readFile(t, name), containerMounts(t))
			if err != nil {
				t.Fatalf("cordon serve --check-config --config %s: %v\n%s", name, err, out)
			}
		})
	}
	// The check must be able to fail, or the passes above prove nothing.
	broken := []struct{ name, text, want string }{
		{"bad listen", "proxy:\n  listen: nowhere\n", "proxy"},
		{"unknown key", "proxy:\n  listen_address: \":3128\"\n", "listen_address"},
		{"edge without redis", "role: edge\n", "redis"},
		{"bad role", "role: everything\n", "role"},
	}
	for _, b := range broken {
		t.Run("rejects "+b.name, func(t *testing.T) {
			out, err := checkConfig(t, "broken.yaml", []byte(b.text), nil)
			if err == nil {
				t.Fatalf("cordon serve --check-config accepted %q:\n%s", b.text, out)
			}
			if !strings.Contains(out, b.want) {
				t.Errorf("cordon serve --check-config on %q printed %q, want it to name %q", b.text, out, b.want)
			}
		})
	}
}

// keyTree is the set of YAML keys of a configuration struct: a nil
// subtree is a leaf (scalar, list, map or text-decoded value).
type keyTree map[string]keyTree

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
)

// keysOf returns the keys of a struct type.
func keysOf(rt reflect.Type) keyTree {
	for rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	if rt.Kind() != reflect.Struct || reflect.PointerTo(rt).Implements(textUnmarshaler) ||
		reflect.PointerTo(rt).Implements(yamlUnmarshaler) || rt == reflect.TypeFor[time.Time]() {
		return nil
	}
	tree := keyTree{}
	for i := range rt.NumField() {
		f := rt.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range keysOf(f.Type) {
				tree[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		tree[name] = keysOf(f.Type)
	}
	return tree
}

// roomTypes are the imported types cmd/cordon's Config is made of.
var roomTypes = map[string]reflect.Type{
	"proxy.Config":       reflect.TypeFor[proxy.Config](),
	"dnsfilter.Config":   reflect.TypeFor[dnsfilter.Config](),
	"reports.Config":     reflect.TypeFor[reports.Config](),
	"categorizer.Config": reflect.TypeFor[categorizer.Config](),
}

// cmdConfigKeys reads the keys of cmd/cordon's Config from its source (it
// is package main, so it cannot be imported).
func cmdConfigKeys(t *testing.T) keyTree {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join("..", "cmd", "cordon", "*.go"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no source in cmd/cordon: %v", err)
	}
	types := map[string]ast.Expr{}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				ts := s.(*ast.TypeSpec)
				types[ts.Name.Name] = ts.Type
			}
		}
	}
	var fromExpr func(e ast.Expr, depth int) keyTree
	fromExpr = func(e ast.Expr, depth int) keyTree {
		if depth > 20 {
			t.Fatal("cmd/cordon: config types nest too deep")
		}
		switch x := e.(type) {
		case *ast.StarExpr:
			return fromExpr(x.X, depth+1)
		case *ast.ParenExpr:
			return fromExpr(x.X, depth+1)
		case *ast.Ident:
			if def, ok := types[x.Name]; ok {
				return fromExpr(def, depth+1)
			}
		case *ast.SelectorExpr:
			pkg, _ := x.X.(*ast.Ident)
			if pkg == nil {
				return nil
			}
			name := pkg.Name + "." + x.Sel.Name
			if rt, ok := roomTypes[name]; ok {
				return keysOf(rt)
			}
			if pkg.Name != "time" {
				t.Errorf("cmd/cordon config uses %s: add it to roomTypes so its keys are checked", name)
			}
		case *ast.StructType:
			tree := keyTree{}
			for _, f := range x.Fields.List {
				tag := ""
				if f.Tag != nil {
					tag, _ = strconv.Unquote(f.Tag.Value)
				}
				name, opts, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
				if name == "-" || (len(f.Names) > 0 && !f.Names[0].IsExported()) {
					continue
				}
				sub := fromExpr(f.Type, depth+1)
				if strings.Contains(opts, "inline") || len(f.Names) == 0 {
					for k, v := range sub {
						tree[k] = v
					}
					continue
				}
				for _, n := range f.Names {
					key := name
					if key == "" {
						key = strings.ToLower(n.Name)
					}
					tree[key] = sub
				}
			}
			return tree
		}
		return nil
	}
	def, ok := types["Config"]
	if !ok {
		t.Fatal("cmd/cordon has no type Config")
	}
	tree := fromExpr(def, 0)
	if len(tree) == 0 {
		t.Fatal("cmd/cordon Config has no yaml keys")
	}
	return tree
}

// compareKeys reports keys of tree missing from node (when all) and keys
// of node that tree does not know.
func compareKeys(t *testing.T, name, at string, tree keyTree, node *yaml.Node, all bool) {
	t.Helper()
	if node.Kind != yaml.MappingNode {
		t.Errorf("%s: %s is not a mapping", name, strings.TrimPrefix(at, "."))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i].Value, node.Content[i+1]
		seen[k] = v
		sub, ok := tree[k]
		if !ok {
			t.Errorf("%s:%d: unknown key %s", name, node.Content[i].Line, strings.TrimPrefix(at+"."+k, "."))
			continue
		}
		if sub != nil && v.Kind == yaml.MappingNode {
			compareKeys(t, name, at+"."+k, sub, v, all)
		} else if sub != nil && all {
			t.Errorf("%s:%d: %s should be a mapping with every key", name, v.Line, strings.TrimPrefix(at+"."+k, "."))
		}
	}
	if !all {
		return
	}
	keys := make([]string, 0, len(tree))
	for k := range tree {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := seen[k]; !ok {
			t.Errorf("%s: key %s is missing (the reference lists every key)", name, strings.TrimPrefix(at+"."+k, "."))
		}
	}
}

func rootNode(t *testing.T, name string) *yaml.Node {
	t.Helper()
	docs, err := yamlDocs(name, readFile(t, name))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", name, len(docs))
	}
	return docs[0].Content[0]
}

func TestConfigKeys(t *testing.T) {
	tree := cmdConfigKeys(t)
	for _, name := range configFiles {
		t.Run(name, func(t *testing.T) {
			compareKeys(t, name, "", tree, rootNode(t, name), name == "cordon.yaml")
		})
	}
}

// section re-encodes one top-level section of a configuration and decodes
// it strictly into out.
func section(t *testing.T, name, key string, out any) {
	t.Helper()
	root := rootNode(t, name)
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != key {
			continue
		}
		b, err := yaml.Marshal(root.Content[i+1])
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(out); err != nil {
			t.Fatalf("%s: %s: %v", name, key, err)
		}
		return
	}
	t.Fatalf("%s: no %s section", name, key)
}

// normalize sets empty slices and maps to nil, so "[]" in a file equals an
// unset default.
func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			normalize(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				normalize(f)
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.SetZero()
			return
		}
		for i := range v.Len() {
			normalize(v.Index(i))
		}
	case reflect.Map:
		if v.Len() == 0 {
			v.SetZero()
		}
	}
}

func sameValue(t *testing.T, what string, got, want any) {
	t.Helper()
	g, w := reflect.ValueOf(&got).Elem(), reflect.ValueOf(&want).Elem()
	gc, wc := reflect.New(g.Elem().Type()).Elem(), reflect.New(w.Elem().Type()).Elem()
	gc.Set(g.Elem())
	wc.Set(w.Elem())
	normalize(gc)
	normalize(wc)
	if !reflect.DeepEqual(gc.Interface(), wc.Interface()) {
		t.Errorf("%s:\n got  %+v\n want %+v", what, gc.Interface(), wc.Interface())
	}
}

// TestReferenceDefaults checks that deploy/cordon.yaml gives every key its
// default: the rooms' sections against their Defaults, the top level
// against the contract.
func TestReferenceDefaults(t *testing.T) {
	const name = "cordon.yaml"
	var pc proxy.Config
	section(t, name, "proxy", &pc)
	sameValue(t, name+" proxy", pc, proxy.Defaults())

	var rc reports.Config
	section(t, name, "reports", &rc)
	sameValue(t, name+" reports", rc, reports.Defaults())

	var cc categorizer.Config
	section(t, name, "categorizer", &cc)
	sameValue(t, name+" categorizer", cc, categorizer.Defaults())

	var dc dnsfilter.Config
	section(t, name, "dns", &dc)
	sameValue(t, name+" dns", dc, dnsfilter.Config{
		Listen:              dnsfilter.DefaultListen,
		Upstreams:           dnsfilter.DefaultUpstreams,
		Strategy:            dnsfilter.DefaultStrategy,
		UpstreamTimeout:     dnsfilter.Duration(dnsfilter.DefaultUpstreamTimeout),
		QueryTimeout:        dnsfilter.Duration(dnsfilter.DefaultQueryTimeout),
		MaxInflight:         dnsfilter.DefaultMaxInflight,
		HealthCheckInterval: dnsfilter.Duration(dnsfilter.DefaultHealthCheckInterval),
		HealthCheckName:     ".",
		Cache: dnsfilter.CacheConfig{
			MaxEntries:     dnsfilter.DefaultCacheEntries,
			MaxTTL:         dnsfilter.Duration(dnsfilter.DefaultCacheMaxTTL),
			MaxNegativeTTL: dnsfilter.Duration(dnsfilter.DefaultCacheMaxNegTTL),
			PrefetchHits:   dnsfilter.DefaultPrefetchHits,
		},
		RateLimit: dnsfilter.RateLimitConfig{
			QPS:        dnsfilter.DefaultRateQPS,
			Burst:      2 * dnsfilter.DefaultRateQPS,
			MaxClients: dnsfilter.DefaultRateMaxClients,
		},
		MaxUDPSize:      dnsfilter.DefaultMaxUDPSize,
		BlockTTL:        dnsfilter.Duration(dnsfilter.DefaultBlockTTL),
		Any:             dnsfilter.AnyHINFO,
		YouTubeRestrict: "strict",
	})

	c := loadConfig(t, name)
	var trusted []any
	for _, p := range policies.DefaultTrustedNetworks() {
		trusted = append(trusted, p.String())
	}
	for _, f := range []struct {
		keys []string
		want any
	}{
		{[]string{"data_dir"}, defaultDataDir},
		{[]string{"role"}, "all"},
		{[]string{"fail_open"}, false},
		{[]string{"log", "level"}, "info"},
		{[]string{"log", "format"}, "text"},
		{[]string{"redis", "url"}, ""},
		{[]string{"redis", "addrs"}, []any{}},
		{[]string{"redis", "master_name"}, ""},
		{[]string{"redis", "username"}, ""},
		{[]string{"redis", "password"}, ""},
		{[]string{"redis", "db"}, 0},
		{[]string{"redis", "key_prefix"}, "cordon:"},
		{[]string{"admin", "listen"}, defaultAdminListen},
		{[]string{"admin", "tls_cert"}, ""},
		{[]string{"admin", "tls_key"}, ""},
		{[]string{"admin", "pprof"}, false},
		{[]string{"access", "trusted_networks"}, trusted},
		{[]string{"policy", "file"}, ""},
	} {
		got, ok := get(c.m, f.keys...)
		if !ok {
			t.Errorf("%s: %s is missing", name, strings.Join(f.keys, "."))
			continue
		}
		if !reflect.DeepEqual(got, f.want) {
			t.Errorf("%s: %s = %#v, want the default %#v", name, strings.Join(f.keys, "."), got, f.want)
		}
	}
}

// TestReferenceFlags checks that the reference names the flag of every key
// a flag overrides.
func TestReferenceFlags(t *testing.T) {
	ref := string(readFile(t, "cordon.yaml"))
	for f := range serveFlags(t) {
		if f == "config" || f == "check-config" || f == "h" || f == "help" {
			continue
		}
		if !strings.Contains(ref, "Flag --"+f+".") && !strings.Contains(ref, "Flag --"+f+"\n") {
			t.Errorf("cordon.yaml does not say which key --%s overrides (\"Flag --%s.\")", f, f)
		}
	}
}

// TestHelpDefaults checks that the defaults `cordon serve --help` states
// are the reference's values.
func TestHelpDefaults(t *testing.T) {
	out, err := exec.Command(cordon(t), "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("cordon serve --help: %v\n%s", err, out)
	}
	keys := map[string][]string{
		"data-dir":     {"data_dir"},
		"role":         {"role"},
		"admin-listen": {"admin", "listen"},
		"proxy-listen": {"proxy", "listen"},
		"dns-listen":   {"dns", "listen"},
		"log-level":    {"log", "level"},
	}
	ref := loadConfig(t, "cordon.yaml")
	seen := 0
	re := regexp.MustCompile(`(?m)^\s+--?([a-z-]+)[^\n]*\n\s+[^\n]*\(default ([^)\s]+)\)`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		k, ok := keys[m[1]]
		if !ok {
			continue
		}
		seen++
		if got := ref.str(t, "", k...); filepath.Clean(got) != filepath.Clean(m[2]) {
			t.Errorf("cordon serve --help: --%s default %q, cordon.yaml %s: %q", m[1], m[2], strings.Join(k, "."), got)
		}
	}
	if seen < 4 {
		t.Errorf("cordon serve --help states %d defaults of %v, want most:\n%s", seen, slices.Collect(maps.Keys(keys)), out)
	}
}

// TestMultiEdgeConfigs checks what edges and control must agree on.
func TestMultiEdgeConfigs(t *testing.T) {
	edge, control := loadConfig(t, "cordon-edge.yaml"), loadConfig(t, "cordon-control.yaml")
	for _, tc := range []struct {
		c    config
		role string
	}{{edge, "edge"}, {control, "control"}} {
		if got := tc.c.str(t, "all", "role"); got != tc.role {
			t.Errorf("%s: role = %q, want %q", tc.c.name, got, tc.role)
		}
		if got := tc.c.str(t, "", "redis", "url"); got != sharedRedisURL {
			t.Errorf("%s: redis.url = %q, want %q", tc.c.name, got, sharedRedisURL)
		}
		if got := tc.c.str(t, "", "data_dir"); got != imageDataDir {
			t.Errorf("%s: data_dir = %q, want the image volume %q", tc.c.name, got, imageDataDir)
		}
		if _, _, admin := tc.c.listenPorts(t); admin != adminPort {
			t.Errorf("%s: admin port %d, want %d", tc.c.name, admin, adminPort)
		}
		if host, _, _ := net.SplitHostPort(tc.c.str(t, defaultAdminListen, "admin", "listen")); host == "127.0.0.1" || host == "localhost" {
			t.Errorf("%s: admin.listen on loopback: probes and port mappings cannot reach it in a container", tc.c.name)
		}
	}
	// Edges and control meet only in Redis: same server, same keys.
	for _, k := range [][]string{{"redis", "url"}, {"redis", "key_prefix"}, {"redis", "db"}, {"redis", "addrs"}, {"redis", "master_name"}} {
		e, _ := get(edge.m, k...)
		c, _ := get(control.m, k...)
		if !reflect.DeepEqual(e, c) {
			t.Errorf("redis.%s: edge %v, control %v: they would not share state", k[1], e, c)
		}
	}
	dpp, ddp := defaultPorts(t)
	if p, d, _ := edge.listenPorts(t); p != dpp || d != ddp {
		t.Errorf("cordon-edge.yaml: proxy port %d, DNS port %d, want the defaults %d and %d", p, d, dpp, ddp)
	}
	if got := control.str(t, "", "policy", "file"); got != configDir+"/policy.yaml" {
		t.Errorf("cordon-control.yaml: policy.file = %q, want %s/policy.yaml", got, configDir)
	}
	// Each role passes the check also when --role names it on the
	// command line, as the systemd units do.
	for _, tc := range []struct{ name, role string }{{"cordon-edge.yaml", "edge"}, {"cordon-control.yaml", "control"}} {
		out, err := checkConfig(t, tc.name, readFile(t, tc.name), containerMounts(t), "--role", tc.role)
		if err != nil {
			t.Errorf("cordon serve --check-config --config %s --role %s: %v\n%s", tc.name, tc.role, err, out)
		}
	}
}

// TestDataPaths checks that state paths stay in the data directory.
func TestDataPaths(t *testing.T) {
	for _, name := range configFiles {
		c := loadConfig(t, name)
		// Files a configuration names in /etc/cordon are shipped here,
		// where compose and the ConfigMap take them from.
		var walk func(at string, v any)
		walk = func(at string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, e := range x {
					walk(at+"."+k, e)
				}
			case []any:
				for i, e := range x {
					walk(fmt.Sprintf("%s[%d]", at, i), e)
				}
			case string:
				if rest, ok := strings.CutPrefix(x, configDir+"/"); ok {
					if _, err := os.Stat(rest); err != nil {
						t.Errorf("%s: %s = %q: deploy/%s: %v", name, at[1:], x, rest, err)
					}
				}
			}
		}
		walk("", c.m)
		dataDir := filepath.Clean(c.str(t, defaultDataDir, "data_dir"))
		for _, keys := range [][]string{
			{"reports", "dir"},
			{"reports", "access_log", "path"},
			{"proxy", "tls_inspection", "ca_dir"},
		} {
			p := c.str(t, "", keys...)
			if p == "" {
				continue
			}
			if rel, err := filepath.Rel(dataDir, filepath.Clean(p)); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s: %s = %q is outside data_dir %q", name, strings.Join(keys, "."), p, dataDir)
			}
		}
	}
}

func TestPolicy(t *testing.T) {
	data := readFile(t, "policy.yaml")
	p, err := policies.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	// It works with the bundled feeds: every category and threat it
	// names is one they provide.
	if err := policies.Validate(p, bundledTable(t)); err != nil {
		t.Fatalf("policy.yaml against the bundled feeds: %v", err)
	}
	if out, err := exec.Command(cordon(t), "policy", "validate", "--local", "policy.yaml").CombinedOutput(); err != nil {
		t.Errorf("cordon policy validate --local policy.yaml: %v\n%s", err, out)
	}
	// A starter policy ships no credentials: no password hash or DoH
	// token an attacker could read here.
	var doc struct {
		Users []map[string]any `yaml:"users"`
		Rules []map[string]any `yaml:"rules"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, u := range doc.Users {
		for _, k := range []string{"password_hash", "doh_token"} {
			if _, ok := u[k]; ok {
				t.Errorf("policy.yaml: user %v has %s: a shipped policy must not carry credentials", u["name"], k)
			}
		}
	}
	if len(doc.Rules) < 3 {
		t.Errorf("policy.yaml has %d rules, want a realistic starter policy", len(doc.Rules))
	}
	// It follows the example policy: the same rules in the same order.
	var example struct {
		Rules []map[string]any `yaml:"rules"`
	}
	if err := yaml.Unmarshal(readFile(t, "../policies/testdata/example.yaml"), &example); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(doc.Rules, example.Rules) {
		t.Errorf("policy.yaml rules differ from policies/testdata/example.yaml: copy them over")
	}
}

// feedTable names the categories and threat feeds of a feed set.
type feedTable struct{ categories, threats map[string]int }

func (f feedTable) CategoryID(name string) (int, bool) { id, ok := f.categories[name]; return id, ok }
func (f feedTable) ThreatID(name string) (int, bool)   { id, ok := f.threats[name]; return id, ok }

// bundledTable is the table of the feeds `cordon serve` loads with no
// configuration.
func bundledTable(t *testing.T) feedTable {
	t.Helper()
	tab := feedTable{categories: map[string]int{categorizer.NewlySeenCategory: categorizer.NewlySeenID}, threats: map[string]int{}}
	feeds := categorizer.DefaultFeeds()
	if len(feeds) == 0 {
		t.Fatal("categorizer.DefaultFeeds() is empty")
	}
	for _, f := range feeds {
		for _, c := range f.Categories {
			if _, to, ok := strings.Cut(c, ":"); ok && f.Format == categorizer.FormatUT1 {
				c = to
			}
			if _, ok := tab.categories[c]; !ok {
				tab.categories[c] = len(tab.categories)
			}
		}
		if f.Threat {
			tab.threats[f.Name] = len(tab.threats)
		}
	}
	return tab
}

// dockerInstr is one Dockerfile instruction with continuations joined.
type dockerInstr struct {
	line int
	cmd  string
	args string
}

func dockerfile(t *testing.T) []dockerInstr {
	t.Helper()
	return dockerInstructions(readFile(t, "Dockerfile"))
}

// dockerInstructions splits a Dockerfile into instructions.
func dockerInstructions(data []byte) []dockerInstr {
	var out []dockerInstr
	sc := bufio.NewScanner(bytes.NewReader(data))
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{start, strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// execForm decodes a JSON-array instruction argument.
func execForm(t *testing.T, in dockerInstr) []string {
	t.Helper()
	var v []string
	if err := yaml.Unmarshal([]byte(in.args), &v); err != nil || !strings.HasPrefix(in.args, "[") {
		t.Fatalf("Dockerfile:%d: %s %s is not in exec form", in.line, in.cmd, in.args)
	}
	return v
}

func TestDockerfile(t *testing.T) {
	instrs := dockerfile(t)
	var froms []dockerInstr
	var final []dockerInstr
	for _, in := range instrs {
		if in.cmd == "FROM" {
			froms = append(froms, in)
			final = nil
		}
		final = append(final, in)
	}
	if len(froms) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", len(froms))
	}
	if f := strings.Fields(froms[0].args); f[0] != "golang:1.26" || len(f) < 3 || !strings.EqualFold(f[1], "AS") {
		t.Errorf("Dockerfile:%d: builder FROM %s, want golang:1.26 AS <name>", froms[0].line, froms[0].args)
	}
	if img := strings.Fields(froms[len(froms)-1].args)[0]; !strings.HasPrefix(img, "gcr.io/distroless/static") || !strings.HasSuffix(img, ":nonroot") {
		t.Errorf("Dockerfile: runtime image %s, want distroless static :nonroot", img)
	}
	var build, user, workdir string
	var expose []string
	var volumes, entry, cmdArgs []string
	copied := map[string]bool{}
	for _, in := range instrs {
		switch in.cmd {
		case "RUN":
			if strings.Contains(in.args, "go build") {
				build = in.args
			}
		case "COPY":
			f := strings.Fields(in.args)
			var srcs []string
			fromStage := false
			for _, a := range f[:len(f)-1] {
				if strings.HasPrefix(a, "--from=") {
					fromStage = true
				}
				if !strings.HasPrefix(a, "--") {
					srcs = append(srcs, a)
				}
			}
			for _, s := range srcs {
				if !fromStage && s != "." {
					if _, err := os.Stat(filepath.Join("..", s)); err != nil {
						t.Errorf("Dockerfile:%d: COPY %s: %v (the context is the repository root)", in.line, s, err)
					}
				}
			}
			copied[f[len(f)-1]] = true
		case "HEALTHCHECK":
			t.Errorf("Dockerfile:%d: HEALTHCHECK cannot run in a distroless image (no shell, no curl)", in.line)
		}
	}
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "WORKDIR":
			workdir = in.args
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "VOLUME":
			volumes = append(volumes, execForm(t, in)...)
		case "ENTRYPOINT":
			entry = execForm(t, in)
		case "CMD":
			cmdArgs = execForm(t, in)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/cordon"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile: go build %q lacks %s", build, want)
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("Dockerfile: runtime USER %q, want a non-root user", user)
	}
	if !slices.Contains(volumes, imageDataDir) {
		t.Errorf("Dockerfile: VOLUME %v, want %s", volumes, imageDataDir)
	}
	if workdir != imageDataDir {
		t.Errorf("Dockerfile: WORKDIR %q, want %s (relative data paths land in the volume)", workdir, imageDataDir)
	}
	if len(entry) != 1 || entry[0] != binPath || !copied[binPath] {
		t.Errorf("Dockerfile: ENTRYPOINT %q, want [%q] copied from the build stage", entry, binPath)
	}
	flags := serveArgs(t, "Dockerfile CMD", cmdArgs)
	if got := flags["data-dir"]; got != imageDataDir {
		t.Errorf("Dockerfile CMD: --data-dir %q, want %s", got, imageDataDir)
	}
	// The image runs without a config file: its ports are the defaults,
	// with the admin listener moved to all interfaces.
	if got := flags["admin-listen"]; got == "" || port(t, "Dockerfile CMD --admin-listen", got) != adminPort {
		t.Errorf("Dockerfile CMD: --admin-listen %q, want port %d", got, adminPort)
	}
	ref := loadConfig(t, "cordon.yaml")
	pp, dp, _ := ref.listenPorts(t)
	want := []string{
		fmt.Sprintf("%d/tcp", pp), fmt.Sprintf("%d/udp", dp), fmt.Sprintf("%d/tcp", dp), fmt.Sprintf("%d/tcp", adminPort),
	}
	var got []string
	for _, e := range expose {
		if !strings.Contains(e, "/") {
			e += "/tcp"
		}
		got = append(got, e)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("Dockerfile: EXPOSE %v, want %v", got, want)
	}
	if b, err := os.ReadFile("Dockerfile.dockerignore"); err != nil || !strings.Contains(string(b), ".git") {
		t.Errorf("Dockerfile.dockerignore should keep .git out of the build context: %v", err)
	}
}

// composePort is one "[ip:]host:container[/proto]" mapping.
type composePort struct {
	ip              string
	host, container int
	proto           string
}

func parseComposePort(s string) (composePort, error) {
	p := composePort{proto: "tcp"}
	if a, proto, ok := strings.Cut(s, "/"); ok {
		s, p.proto = a, proto
	}
	parts := strings.Split(s, ":")
	if len(parts) == 3 {
		p.ip, parts = parts[0], parts[1:]
	}
	if len(parts) != 2 {
		return p, fmt.Errorf("port %q: want [ip:]host:container[/proto]", s)
	}
	var err1, err2 error
	p.host, err1 = strconv.Atoi(parts[0])
	p.container, err2 = strconv.Atoi(parts[1])
	if err := errors.Join(err1, err2); err != nil {
		return p, fmt.Errorf("port %q: %w", s, err)
	}
	return p, nil
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]any    `yaml:"depends_on"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	User        string            `yaml:"user"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func TestCompose(t *testing.T) {
	var doc struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(readFile(t, "compose.yaml"), &doc); err != nil {
		t.Fatal(err)
	}
	svcs := doc.Services
	if _, ok := svcs["redis"]; !ok {
		t.Fatal("compose.yaml: no redis service")
	}
	redisURL := loadConfig(t, "cordon-edge.yaml").str(t, "", "redis", "url")
	if !strings.HasPrefix(redisURL, "redis://redis:6379/") {
		t.Errorf("cordon-edge.yaml: redis.url %q does not name the compose service redis:6379", redisURL)
	}
	roles := map[string]int{}
	hostPorts := map[string]string{}
	for name, s := range svcs {
		if name == "redis" {
			continue
		}
		where := "compose.yaml " + name
		if s.Build == nil || s.Build.Dockerfile == "" {
			t.Errorf("%s: no build section", where)
		} else if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: build: %v", where, err)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: want read_only, cap_drop [ALL] and no-new-privileges", where)
		}
		if u, _, _ := strings.Cut(s.User, ":"); u == "" || u == "0" || u == "root" {
			t.Errorf("%s: user %q, want non-root", where, s.User)
		}
		// Bind mounts come from deploy/; named volumes are declared.
		mounted := map[string]string{}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("%s: volume %q: want source:target", where, v)
				continue
			}
			src, dst := parts[0], parts[1]
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s: volume %q: %v", where, v, err)
				}
			} else if _, ok := doc.Volumes[src]; !ok {
				t.Errorf("%s: volume %q is not declared under volumes", where, src)
			}
			mounted[dst] = src
		}
		flags := serveArgs(t, where, s.Command)
		cfgPath := flags["config"]
		src, ok := mounted[cfgPath]
		if !ok {
			t.Errorf("%s: --config %q is not mounted", where, cfgPath)
			continue
		}
		c := loadConfig(t, filepath.Clean(src))
		role := c.str(t, "all", "role")
		if r, ok := flags["role"]; ok {
			role = r
		}
		roles[role]++
		if dd := c.str(t, defaultDataDir, "data_dir"); mounted[dd] == "" {
			t.Errorf("%s: data_dir %q of %s is not a volume", where, dd, src)
		}
		if pf := c.str(t, "", "policy", "file"); pf != "" && mounted[pf] == "" {
			t.Errorf("%s: policy.file %q of %s is not mounted", where, pf, src)
		}
		if u := c.str(t, "", "redis", "url"); u != "" {
			host := strings.TrimPrefix(u, "redis://")
			host, _, _ = strings.Cut(host, "/")
			h, _, _ := net.SplitHostPort(host)
			if _, ok := svcs[h]; !ok {
				t.Errorf("%s: redis.url %q names no compose service", where, u)
			}
			if _, ok := s.DependsOn[h]; !ok {
				t.Errorf("%s: does not depend on %s", where, h)
			}
		}
		pp, dp, ap := c.listenPorts(t)
		want := map[string]bool{fmt.Sprintf("%d/tcp", ap): true}
		if role != "control" {
			want[fmt.Sprintf("%d/tcp", pp)] = true
			want[fmt.Sprintf("%d/udp", dp)] = true
			want[fmt.Sprintf("%d/tcp", dp)] = true
		}
		for _, ps := range s.Ports {
			p, err := parseComposePort(ps)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			key := fmt.Sprintf("%d/%s", p.container, p.proto)
			if !want[key] {
				t.Errorf("%s: publishes container port %s, which %s does not listen on", where, key, src)
			}
			delete(want, key)
			if p.container == ap && p.ip != "127.0.0.1" {
				t.Errorf("%s: admin port published on %q, want 127.0.0.1 only", where, p.ip)
			}
			hk := fmt.Sprintf("%s:%d/%s", p.ip, p.host, p.proto)
			if other, dup := hostPorts[hk]; dup {
				t.Errorf("%s: host port %s also used by %s", where, hk, other)
			}
			hostPorts[hk] = name
		}
		for k := range want {
			t.Errorf("%s: container port %s of %s is not published", where, k, src)
		}
		if tok, ok := s.Environment["CORDON_ADMIN_TOKEN"]; ok && !strings.HasPrefix(tok, "${") {
			t.Errorf("%s: CORDON_ADMIN_TOKEN is a literal; take it from the environment", where)
		}
		if role == "control" {
			if tok := s.Environment["CORDON_ADMIN_TOKEN"]; !strings.HasPrefix(tok, "${CORDON_ADMIN_TOKEN") {
				t.Errorf("%s: CORDON_ADMIN_TOKEN = %q, want ${CORDON_ADMIN_TOKEN...}", where, tok)
			}
		}
	}
	if roles["control"] != 1 || roles["edge"] != 2 {
		t.Errorf("compose.yaml roles %v, want one control and two edges", roles)
	}
}

// k8sObjects are the decoded objects of every manifest in k8s/.
type k8sObjects struct {
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	pvcs         map[string]*corev1.PersistentVolumeClaim
	services     map[string]*corev1.Service
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	netpols      map[string]*networkingv1.NetworkPolicy
	files        map[string][]string // file → kind/name
}

// splitDocs splits a YAML stream at "---" lines.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func loadK8s(t *testing.T) *k8sObjects {
	t.Helper()
	o := &k8sObjects{
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pvcs: map[string]*corev1.PersistentVolumeClaim{}, services: map[string]*corev1.Service{},
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		netpols: map[string]*networkingv1.NetworkPolicy{},
		files:   map[string][]string{},
	}
	paths, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		name := filepath.ToSlash(p)
		if path.Base(name) == "kustomization.yaml" {
			continue
		}
		for i, doc := range splitDocs(readFile(t, name)) {
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if err := k8syaml.Unmarshal(doc, &meta); err != nil {
				t.Errorf("%s document %d: %v", name, i+1, err)
				continue
			}
			where := fmt.Sprintf("%s document %d (%s %s)", name, i+1, meta.Kind, meta.Metadata.Name)
			if meta.APIVersion == "" || meta.Kind == "" || meta.Metadata.Name == "" {
				t.Errorf("%s: want apiVersion, kind and metadata.name", where)
				continue
			}
			if meta.Kind != "Namespace" && meta.Metadata.Namespace != "cordon" {
				t.Errorf("%s: namespace %q, want cordon", where, meta.Metadata.Namespace)
			}
			var into any
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 Namespace":
				into = &corev1.Namespace{}
			case "v1 ConfigMap":
				v := &corev1.ConfigMap{}
				into = v
				o.configMaps[meta.Metadata.Name] = v
			case "v1 Secret":
				v := &corev1.Secret{}
				into = v
				o.secrets[meta.Metadata.Name] = v
			case "v1 PersistentVolumeClaim":
				v := &corev1.PersistentVolumeClaim{}
				into = v
				o.pvcs[meta.Metadata.Name] = v
			case "v1 Service":
				v := &corev1.Service{}
				into = v
				o.services[meta.Metadata.Name] = v
			case "apps/v1 Deployment":
				v := &appsv1.Deployment{}
				into = v
				o.deployments[meta.Metadata.Name] = v
			case "apps/v1 StatefulSet":
				v := &appsv1.StatefulSet{}
				into = v
				o.statefulSets[meta.Metadata.Name] = v
			case "policy/v1 PodDisruptionBudget":
				v := &policyv1.PodDisruptionBudget{}
				into = v
				o.pdbs[meta.Metadata.Name] = v
			case "autoscaling/v2 HorizontalPodAutoscaler":
				v := &autoscalingv2.HorizontalPodAutoscaler{}
				into = v
				o.hpas[meta.Metadata.Name] = v
			case "networking.k8s.io/v1 NetworkPolicy":
				v := &networkingv1.NetworkPolicy{}
				into = v
				o.netpols[meta.Metadata.Name] = v
			default:
				t.Errorf("%s: unexpected %s %s", where, meta.APIVersion, meta.Kind)
				continue
			}
			// Strict: a misspelled or misplaced field is an error, as the
			// API server's field validation would make it.
			if err := k8syaml.UnmarshalStrict(doc, into); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			o.files[name] = append(o.files[name], meta.Kind+"/"+meta.Metadata.Name)
		}
	}
	return o
}

// renderConfigMap builds k8s/configmap.yaml from the files it embeds.
func renderConfigMap(t *testing.T) []byte {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Generated by `go test ./deploy -update` from deploy/")
	b.WriteString(strings.Join(configMapFiles, ", deploy/"))
	b.WriteString(":\n# edit those and regenerate; a test fails when this copy differs.\n")
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cordon-config\n  namespace: cordon\n")
	b.WriteString("  labels:\n    app.kubernetes.io/part-of: cordon\ndata:\n")
	for _, name := range configMapFiles {
		data := string(readFile(t, name))
		if !strings.HasSuffix(data, "\n") || strings.HasSuffix(data, "\n\n") || strings.HasPrefix(data, " ") {
			t.Fatalf("%s: want no leading space and exactly one final newline to embed it", name)
		}
		fmt.Fprintf(&b, "  %s: |\n", name)
		for _, line := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
			if strings.TrimSpace(line) == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString("    " + line + "\n")
		}
	}
	return []byte(b.String())
}

func TestConfigMapMatchesFiles(t *testing.T) {
	want := renderConfigMap(t)
	if *update {
		if err := os.WriteFile(filepath.Join("k8s", "configmap.yaml"), want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := loadK8s(t)
	cm, ok := o.configMaps["cordon-config"]
	if !ok {
		t.Fatal("k8s: no ConfigMap cordon-config")
	}
	for _, name := range configMapFiles {
		if got := cm.Data[name]; got != string(readFile(t, name)) {
			t.Errorf("k8s/configmap.yaml %s differs from deploy/%s: run go test ./deploy -update", name, name)
		}
	}
	if len(cm.Data) != len(configMapFiles) {
		t.Errorf("k8s/configmap.yaml has %d keys, want %v", len(cm.Data), configMapFiles)
	}
}

// podMounts maps each file path a container sees to the ConfigMap key it
// comes from, and each directory mount to its volume.
type podMounts struct {
	files map[string]string // path → configmap/key
	dirs  map[string]corev1.Volume
}

func mountsOf(t *testing.T, where string, o *k8sObjects, spec corev1.PodSpec, c corev1.Container) podMounts {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			cm, ok := o.configMaps[v.ConfigMap.Name]
			if !ok {
				t.Errorf("%s: volume %s: ConfigMap %q does not exist", where, v.Name, v.ConfigMap.Name)
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s has no key %q", where, v.Name, cm.Name, it.Key)
				}
			}
		case v.PersistentVolumeClaim != nil:
			if _, ok := o.pvcs[v.PersistentVolumeClaim.ClaimName]; !ok {
				t.Errorf("%s: volume %s: PersistentVolumeClaim %q does not exist", where, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		case v.Secret != nil:
			if _, ok := o.secrets[v.Secret.SecretName]; !ok {
				t.Errorf("%s: volume %s: Secret %q does not exist", where, v.Name, v.Secret.SecretName)
			}
		}
	}
	m := podMounts{files: map[string]string{}, dirs: map[string]corev1.Volume{}}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			t.Errorf("%s: volumeMount %s names no volume", where, vm.Name)
			continue
		}
		m.dirs[vm.MountPath] = v
		if v.ConfigMap != nil {
			for _, it := range v.ConfigMap.Items {
				m.files[path.Join(vm.MountPath, it.Path)] = v.ConfigMap.Name + "/" + it.Key
			}
		}
	}
	return m
}

// containerPort resolves a probe or Service target port in a container.
func containerPort(c corev1.Container, p intstr.IntOrString, proto corev1.Protocol) (int32, bool) {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, cp := range c.Ports {
		cproto := cp.Protocol
		if cproto == "" {
			cproto = corev1.ProtocolTCP
		}
		if cproto != proto {
			continue
		}
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func TestKubernetes(t *testing.T) {
	o := loadK8s(t)

	// kustomization.yaml lists every manifest but the Secret.
	var kz struct {
		Namespace string   `yaml:"namespace"`
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(readFile(t, "k8s/kustomization.yaml"), &kz); err != nil {
		t.Fatal(err)
	}
	for _, r := range kz.Resources {
		if _, ok := o.files["k8s/"+r]; !ok {
			t.Errorf("k8s/kustomization.yaml: resource %s is not a manifest here", r)
		}
	}
	for f := range o.files {
		base := path.Base(f)
		if inKz := slices.Contains(kz.Resources, base); inKz == (base == "secret.yaml") {
			t.Errorf("k8s/kustomization.yaml: %s listed %v; want every manifest but secret.yaml (apply must not overwrite the operator's token)", base, inKz)
		}
	}
	if _, ok := o.secrets["cordon-admin"]; !ok {
		t.Error("k8s: no Secret cordon-admin")
	}

	workloads := map[string]struct {
		labels map[string]string
		spec   corev1.PodSpec
	}{}
	for name, d := range o.deployments {
		workloads[name] = struct {
			labels map[string]string
			spec   corev1.PodSpec
		}{d.Spec.Template.Labels, d.Spec.Template.Spec}
		if d.Spec.Selector == nil || !labelsMatch(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("Deployment %s: selector does not match its pod labels", name)
		}
	}
	for name, s := range o.statefulSets {
		workloads[name] = struct {
			labels map[string]string
			spec   corev1.PodSpec
		}{s.Spec.Template.Labels, s.Spec.Template.Spec}
		if _, ok := o.services[s.Spec.ServiceName]; !ok {
			t.Errorf("StatefulSet %s: serviceName %q is not a Service", name, s.Spec.ServiceName)
		}
	}

	roles := map[string]string{}
	for name, d := range o.deployments {
		where := "Deployment " + name
		spec := d.Spec.Template.Spec
		checkPodSecurity(t, where, spec)
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", where, len(spec.Containers))
		}
		c := spec.Containers[0]
		where += " container " + c.Name
		checkContainerSecurity(t, where, c)
		checkResources(t, where, c)
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				ref := e.ValueFrom.SecretKeyRef
				s, ok := o.secrets[ref.Name]
				if !ok && ref.Optional != nil && *ref.Optional {
					continue
				}
				if !ok {
					t.Errorf("%s: env %s: Secret %q does not exist", where, e.Name, ref.Name)
				} else if _, ok := s.StringData[ref.Key]; !ok {
					if _, ok := s.Data[ref.Key]; !ok {
						t.Errorf("%s: env %s: Secret %s has no key %q", where, e.Name, ref.Name, ref.Key)
					}
				}
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				if _, ok := o.configMaps[e.ValueFrom.ConfigMapKeyRef.Name]; !ok {
					t.Errorf("%s: env %s: ConfigMap %q does not exist", where, e.Name, e.ValueFrom.ConfigMapKeyRef.Name)
				}
			}
		}
		if len(c.Command) != 0 {
			t.Errorf("%s: command %q overrides the image entrypoint %s", where, c.Command, binPath)
		}
		flags := serveArgs(t, where, c.Args)
		mounts := mountsOf(t, where, o, spec, c)
		src, ok := mounts.files[flags["config"]]
		if !ok {
			t.Errorf("%s: --config %q is not a mounted ConfigMap key", where, flags["config"])
			continue
		}
		cmName, key, _ := strings.Cut(src, "/")
		cfgText := o.configMaps[cmName].Data[key]
		var m map[string]any
		if err := yaml.Unmarshal([]byte(cfgText), &m); err != nil {
			t.Fatalf("%s: %s: %v", where, src, err)
		}
		cfg := config{name: "ConfigMap " + src, m: m}
		role := cfg.str(t, "all", "role")
		if r, ok := flags["role"]; ok {
			role = r
		}
		roles[name] = role
		if dd := cfg.str(t, defaultDataDir, "data_dir"); mounts.dirs[dd].Name == "" {
			t.Errorf("%s: data_dir %q of %s is not a volume mount", where, dd, src)
		}
		if pf := cfg.str(t, "", "policy", "file"); pf != "" {
			if _, ok := mounts.files[pf]; !ok {
				t.Errorf("%s: policy.file %q of %s is not mounted", where, pf, src)
			}
		}
		if c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem {
			if mounts.dirs["/tmp"].Name == "" {
				t.Errorf("%s: read-only root without a /tmp volume", where)
			}
		}

		// Container ports are the configuration's listen ports.
		pp, dp, ap := cfg.listenPorts(t)
		want := map[string]int32{"admin/TCP": int32(ap)}
		if role != "control" {
			want["proxy/TCP"] = int32(pp)
			want["dns-udp/UDP"] = int32(dp)
			want["dns-tcp/TCP"] = int32(dp)
		}
		got := map[string]int32{}
		for _, cp := range c.Ports {
			proto := cp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			got[cp.Name+"/"+string(proto)] = cp.ContainerPort
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: ports %v, want %v (from %s)", where, got, want, src)
		}
		dpp, ddp := defaultPorts(t)
		if ap != adminPort || (role != "control" && (pp != dpp || dp != ddp)) {
			t.Errorf("%s: %s listens on proxy %d, DNS %d, admin %d; want the defaults %d, %d, %d", where, src, pp, dp, ap, dpp, ddp, adminPort)
		}

		// Probes: readiness /readyz, liveness /healthz on the admin port.
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
			path  string
		}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s", where, p.kind)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				t.Errorf("%s: %s path %q, want %q", where, p.kind, p.probe.HTTPGet.Path, p.path)
			}
			if n, ok := containerPort(c, p.probe.HTTPGet.Port, corev1.ProtocolTCP); !ok || int(n) != ap {
				t.Errorf("%s: %s port %s is %d, want the admin port %d", where, p.kind, p.probe.HTTPGet.Port.String(), n, ap)
			}
			if p.probe.HTTPGet.Scheme != "" && p.probe.HTTPGet.Scheme != corev1.URISchemeHTTP {
				t.Errorf("%s: %s scheme %s, but %s configures no admin TLS", where, p.kind, p.probe.HTTPGet.Scheme, src)
			}
		}
	}
	if !slices.Contains(slices.Collect(maps.Values(roles)), "edge") || !slices.Contains(slices.Collect(maps.Values(roles)), "control") {
		t.Errorf("k8s: Deployment roles %v, want an edge and a control", roles)
	}

	// Services select a workload and target its container ports.
	clientPorts := map[string]string{}
	for name, s := range o.services {
		where := "Service " + name
		var wl []string
		for wn, w := range workloads {
			if len(s.Spec.Selector) > 0 && labelsMatch(s.Spec.Selector, w.labels) {
				wl = append(wl, wn)
			}
		}
		if len(wl) != 1 {
			t.Errorf("%s: selector %v matches workloads %v, want exactly one", where, s.Spec.Selector, wl)
			continue
		}
		c := workloads[wl[0]].spec.Containers[0]
		for _, sp := range s.Spec.Ports {
			tp := sp.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(sp.Port)
			}
			n, ok := containerPort(c, tp, sp.Protocol)
			if !ok {
				t.Errorf("%s: port %s targets %s/%s, which %s does not expose", where, sp.Name, tp.String(), sp.Protocol, wl[0])
				continue
			}
			if roles[wl[0]] == "edge" {
				want := map[string]int32{"3128/TCP": 3128, "53/UDP": 5353, "53/TCP": 5353, "8080/TCP": adminPort}
				if w, ok := want[fmt.Sprintf("%d/%s", sp.Port, sp.Protocol)]; !ok || w != n {
					t.Errorf("%s: port %d/%s → %d, want 3128→3128, 53→5353 (UDP and TCP) or 8080→8080", where, sp.Port, sp.Protocol, n)
				}
				if sp.Port != adminPort {
					clientPorts[fmt.Sprintf("%d/%s", sp.Port, sp.Protocol)] = name
				} else if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
					t.Errorf("%s: the edges' admin port (unauthenticated /metrics) on a %s Service; keep it ClusterIP behind an Ingress", where, s.Spec.Type)
				}
			}
		}
		if roles[wl[0]] == "edge" && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port != adminPort }) {
			if len(s.Spec.Ports) != 3 {
				t.Errorf("%s: %d ports, want proxy 3128 and DNS 53 over UDP and TCP", where, len(s.Spec.Ports))
			}
			if s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
				t.Errorf("%s: a LoadBalancer without externalTrafficPolicy Local hides client addresses behind node addresses", where)
			}
		}
		if roles[wl[0]] == "control" {
			if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != adminPort {
				t.Errorf("%s: ports %v, want the admin port %d only", where, s.Spec.Ports, adminPort)
			}
			if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("%s: type %s; the admin API stays inside the cluster", where, s.Spec.Type)
			}
		}
	}

	if len(clientPorts) != 3 {
		t.Errorf("k8s: edge Services publish %v, want 3128/TCP, 53/UDP and 53/TCP", clientPorts)
	}

	// Network policies select a workload and open only its ports.
	for name, np := range o.netpols {
		where := "NetworkPolicy " + name
		var wl []string
		for wn, w := range workloads {
			if labelsMatch(np.Spec.PodSelector.MatchLabels, w.labels) {
				wl = append(wl, wn)
			}
		}
		if len(wl) != 1 {
			t.Errorf("%s: podSelector matches workloads %v, want exactly one", where, wl)
			continue
		}
		c := workloads[wl[0]].spec.Containers[0]
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				proto := corev1.ProtocolTCP
				if p.Protocol != nil {
					proto = *p.Protocol
				}
				if p.Port == nil {
					t.Errorf("%s: an ingress rule opens every port", where)
					continue
				}
				if _, ok := containerPort(c, *p.Port, proto); !ok {
					t.Errorf("%s: opens %s/%s, which %s does not expose", where, p.Port.String(), proto, wl[0])
				}
			}
		}
	}
	for wn := range workloads {
		covered := false
		for _, np := range o.netpols {
			covered = covered || labelsMatch(np.Spec.PodSelector.MatchLabels, workloads[wn].labels)
		}
		if !covered {
			t.Errorf("k8s: no NetworkPolicy selects %s", wn)
		}
	}

	// The edges have a disruption budget and an autoscaler on CPU.
	edge := ""
	for name, r := range roles {
		if r == "edge" {
			edge = name
		}
	}
	var pdbOK, hpaOK bool
	for name, p := range o.pdbs {
		if p.Spec.Selector != nil && labelsMatch(p.Spec.Selector.MatchLabels, workloads[edge].labels) {
			pdbOK = true
			if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
				t.Errorf("PodDisruptionBudget %s: neither minAvailable nor maxUnavailable", name)
			}
		}
	}
	for name, h := range o.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || o.deployments[ref.Name] == nil {
			t.Errorf("HorizontalPodAutoscaler %s: scaleTargetRef %s/%s does not exist", name, ref.Kind, ref.Name)
			continue
		}
		if ref.Name != edge {
			continue
		}
		for _, m := range h.Spec.Metrics {
			if m.Resource != nil && m.Resource.Name == corev1.ResourceCPU && m.Resource.Target.AverageUtilization != nil {
				hpaOK = true
			}
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HorizontalPodAutoscaler %s: want minReplicas ≥ 2 ≤ maxReplicas", name)
		}
		if d := o.deployments[edge]; d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas while an autoscaler owns it: every apply would reset the count", edge)
		}
	}
	// Rolling updates lose no request: a new edge is up before an old one
	// goes, the old one leaves the endpoints before SIGTERM, and the
	// grace period covers that wait plus the drain (cmd/cordon drains
	// for up to 20 s).
	if d := o.deployments[edge]; d != nil {
		const drainSeconds = 20
		spec := d.Spec.Template.Spec
		c := spec.Containers[0]
		wait := int64(0)
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			wait = c.Lifecycle.PreStop.Sleep.Seconds
		}
		if wait < 1 {
			t.Errorf("Deployment %s: no preStop sleep: a stopping edge still gets new connections until its endpoint is removed", edge)
		}
		if g := spec.TerminationGracePeriodSeconds; g == nil || *g < wait+drainSeconds {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds %v, want at least %d (preStop %d s + drain %d s)", edge, g, wait+drainSeconds, wait, drainSeconds)
		}
		if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("Deployment %s: want a rolling update with maxUnavailable 0", edge)
		}
	}
	if !pdbOK {
		t.Errorf("k8s: no PodDisruptionBudget selects the edges")
	}
	if !hpaOK {
		t.Errorf("k8s: no HorizontalPodAutoscaler on CPU for the edges")
	}
	for name, s := range o.statefulSets {
		checkPodSecurity(t, "StatefulSet "+name, s.Spec.Template.Spec)
		for _, c := range s.Spec.Template.Spec.Containers {
			checkContainerSecurity(t, "StatefulSet "+name+" container "+c.Name, c)
			checkResources(t, "StatefulSet "+name+" container "+c.Name, c)
		}
	}
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkPodSecurity checks the pod-level rules of the "restricted" Pod
// Security Standard the namespace enforces.
func checkPodSecurity(t *testing.T, where string, spec corev1.PodSpec) {
	t.Helper()
	sc := spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext must set runAsNonRoot and a non-zero runAsUser", where)
	}
	if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod securityContext must set seccompProfile RuntimeDefault", where)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: shares a host namespace", where)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: volume %s is a hostPath", where, v.Name)
		}
	}
}

func checkContainerSecurity(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", where)
		return
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: want allowPrivilegeEscalation: false", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: want readOnlyRootFilesystem: true", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: want capabilities drop [ALL] and none added", where)
	}
}

func checkResources(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		q, ok := c.Resources.Requests[r]
		if !ok || q.IsZero() {
			t.Errorf("%s: no %s request", where, r)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(c.Resources.Requests[corev1.ResourceMemory]) < 0 {
		t.Errorf("%s: memory limit missing or below the request", where)
	}
}

// TestKustomizeBuild renders k8s/ with kubectl's kustomize when kubectl is
// installed.
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	out, err := exec.Command(kubectl, "kustomize", "k8s").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/k8s: %v\n%s", err, out)
	}
	docs := splitDocs(out)
	o := loadK8s(t)
	want := 0
	for f, objs := range o.files {
		if path.Base(f) != "secret.yaml" {
			want += len(objs)
		}
	}
	if len(docs) != want {
		t.Errorf("kubectl kustomize rendered %d objects, want %d", len(docs), want)
	}
}

// unit is a systemd unit file: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, name string) unit {
	t.Helper()
	u := unit{}
	sec := ""
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, name)))
	n := 0
	var cont strings.Builder
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cont.Len() == 0 && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";")) {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cont.WriteString(s + " ")
			continue
		}
		cont.WriteString(line)
		line = cont.String()
		cont.Reset()
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			sec = line[1 : len(line)-1]
			if u[sec] == nil {
				u[sec] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || sec == "" {
			t.Fatalf("%s:%d: %q is not key=value in a section", name, n, line)
		}
		u[sec][strings.TrimSpace(k)] = append(u[sec][strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	return u
}

func (u unit) last(sec, key string) string {
	v := u[sec][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestSystemd(t *testing.T) {
	units := []struct{ file, role, config string }{
		{"systemd/cordon.service", "all", "cordon.yaml"},
		{"systemd/cordon-edge.service", "edge", "cordon-edge.yaml"},
		{"systemd/cordon-control.service", "control", "cordon-control.yaml"},
	}
	for _, tc := range units {
		t.Run(path.Base(tc.file), func(t *testing.T) {
			u := parseUnit(t, tc.file)
			s := u["Service"]
			if s == nil {
				t.Fatalf("%s: no [Service] section", tc.file)
			}
			exec := strings.Fields(u.last("Service", "ExecStart"))
			if len(exec) < 2 || exec[0] != binPath {
				t.Fatalf("%s: ExecStart %q, want %s serve ...", tc.file, exec, binPath)
			}
			flags := serveArgs(t, tc.file, exec[1:])
			if got := flags["config"]; got != configDir+"/"+tc.config {
				t.Errorf("%s: --config %q, want %s/%s (deploy/%s)", tc.file, got, configDir, tc.config, tc.config)
			}
			c := loadConfig(t, tc.config)
			role := c.str(t, "all", "role")
			if r, ok := flags["role"]; ok {
				role = r
			}
			if role != tc.role {
				t.Errorf("%s: runs role %q, want %q", tc.file, role, tc.role)
			}
			state := u.last("Service", "StateDirectory")
			if state == "" {
				t.Errorf("%s: no StateDirectory", tc.file)
			}
			dataDir := c.str(t, defaultDataDir, "data_dir")
			if d, ok := flags["data-dir"]; ok {
				dataDir = d
			}
			if dataDir != "/var/lib/"+state {
				t.Errorf("%s: data dir %q, want the StateDirectory /var/lib/%s", tc.file, dataDir, state)
			}
			for key, want := range map[string]string{
				"NoNewPrivileges": "yes",
				"ProtectSystem":   "strict",
				"ProtectHome":     "yes",
				"PrivateTmp":      "yes",
			} {
				if got := u.last("Service", key); got != want {
					t.Errorf("%s: %s=%q, want %q", tc.file, key, got, want)
				}
			}
			if u.last("Service", "DynamicUser") != "yes" && u.last("Service", "User") == "" {
				t.Errorf("%s: runs as root: want DynamicUser=yes or User=", tc.file)
			}
			if ef := u.last("Service", "EnvironmentFile"); !strings.HasPrefix(strings.TrimPrefix(ef, "-"), configDir+"/") {
				t.Errorf("%s: EnvironmentFile %q, want one in %s for the tokens", tc.file, ef, configDir)
			}
			// Binding :53 is documented; without it no capability is kept.
			if !strings.Contains(string(readFile(t, tc.file)), "AmbientCapabilities=CAP_NET_BIND_SERVICE") {
				t.Errorf("%s: does not document AmbientCapabilities=CAP_NET_BIND_SERVICE for :53", tc.file)
			}
			if got := u.last("Service", "CapabilityBoundingSet"); got != "" && got != "CAP_NET_BIND_SERVICE" {
				t.Errorf("%s: CapabilityBoundingSet=%s keeps more than CAP_NET_BIND_SERVICE", tc.file, got)
			}
			if ws := u.last("Install", "WantedBy"); ws != "multi-user.target" {
				t.Errorf("%s: WantedBy=%q, want multi-user.target", tc.file, ws)
			}
			// The configuration it names passes the check with the unit's
			// flags and paths.
			var extra []string
			for k, v := range flags {
				if k != "config" && k != "data-dir" {
					extra = append(extra, "--"+k+"="+v)
				}
			}
			out, err := checkConfig(t, tc.config, readFile(t, tc.config), containerMounts(t), append(extra, "--data-dir", t.TempDir())...)
			if err != nil {
				t.Errorf("%s: cordon serve --check-config: %v\n%s", tc.file, err, out)
			}
			systemdVerify(t, tc.file)
		})
	}
	if _, err := os.Stat("systemd/cordon.env.example"); err != nil {
		t.Errorf("systemd: the EnvironmentFile example is missing: %v", err)
	}
}

// systemdVerify runs systemd-analyze verify on a copy of the unit whose
// ExecStart points at the built binary; unknown keys are errors.
func systemdVerify(t *testing.T, name string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit not verified")
		return
	}
	text := strings.ReplaceAll(string(readFile(t, name)), binPath, cordon(t))
	p := filepath.Join(t.TempDir(), path.Base(name))
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", p).CombinedOutput()
	var bad []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, path.Base(name)) && !strings.Contains(line, "Failed to ") {
			bad = append(bad, line)
		}
	}
	if err != nil || len(bad) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
	}
	// systemd's own exposure score (0 best, 10 worst): keep it "OK".
	out, err = exec.Command(sa, "security", "--offline=yes", "--no-pager", p).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Errorf("systemd-analyze security --offline=yes %s: %v\n%s", name, err, out)
		return
	}
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2.0 {
		t.Errorf("systemd-analyze security %s: exposure %.1f, want at most 2.0\n%s", name, score, out)
	}
}

// TestREADME checks that the README covers every file of deploy/.
func TestREADME(t *testing.T) {
	readme := string(readFile(t, "README.md"))
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		p = filepath.ToSlash(p)
		if strings.HasSuffix(p, ".go") || p == "README.md" {
			return nil
		}
		if !strings.Contains(readme, p) {
			t.Errorf("README.md does not mention %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--check-config", "kubectl -n cordon create secret", "CORDON_ADMIN_TOKEN", "CAP_NET_BIND_SERVICE", "/readyz", "/healthz"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not mention %s", want)
		}
	}
}

// process is a cordon process started by a test.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startCordon runs `cordon serve --config cfg` until the test ends
// (SIGTERM, then kill after 25 s).
func startCordon(t *testing.T, name, cfg string, env ...string) *process {
	t.Helper()
	return startCordonArgs(t, name, filepath.Dir(cfg), []string{"serve", "--config", cfg}, env...)
}

// startCordonArgs runs cordon with args in dir until the test ends.
func startCordonArgs(t *testing.T, name, dir string, args []string, env ...string) *process {
	t.Helper()
	p := &process{name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(cordon(t), args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(25 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			t.Errorf("%s did not stop within 25 s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("%s output (last lines):\n%s", name, p.tail(30))
		}
	})
	return p
}

// tail is the last n lines of the process output.
func (p *process) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.out.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitReady polls GET /readyz until it answers 200; the wait is bounded.
func (p *process) waitReady(t *testing.T, admin string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(120 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before it was ready:\n%s", p.name, p.cmd.ProcessState, p.tail(30))
		default:
		}
		resp, err := client.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 120 s (last: %v):\n%s", p.name, err, p.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// localConfig rewrites a deploy configuration for this machine: Redis,
// data directory, listen addresses on loopback and /etc/cordon paths.
func localConfig(t *testing.T, name, redisURL string, listen map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	abs, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(readFile(t, name), &m); err != nil {
		t.Fatal(err)
	}
	set := func(v any, keys ...string) {
		cur := m
		for _, k := range keys[:len(keys)-1] {
			next, ok := cur[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[k] = next
			}
			cur = next
		}
		cur[keys[len(keys)-1]] = v
	}
	set(redisURL, "redis", "url")
	set(filepath.Join(dir, "data"), "data_dir")
	for section, addr := range listen {
		set(addr, section, "listen")
	}
	if pf, ok := get(m, "policy", "file"); ok {
		set(strings.Replace(pf.(string), configDir, abs, 1), "policy", "file")
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// threatHost is a name from the first bundled hosts or domains threat feed.
func threatHost(t *testing.T) (host, feed string) {
	t.Helper()
	for _, f := range categorizer.DefaultFeeds() {
		file, ok := strings.CutPrefix(f.Source, "bundled:")
		if !f.Threat || !ok || (f.Format != categorizer.FormatHosts && f.Format != categorizer.FormatDomains) {
			continue
		}
		fh, err := os.Open(filepath.Join("..", "categorizer", "bundled", file))
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		var r io.Reader = fh
		if strings.HasSuffix(file, ".gz") {
			zr, err := gzip.NewReader(fh)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], "!") {
				continue
			}
			h := fields[len(fields)-1]
			if n, err := categorizer.NormalizeHost(h); err == nil && strings.Contains(n, ".") && net.ParseIP(n) == nil {
				return n, f.Name
			}
		}
	}
	t.Fatal("no bundled hosts or domains threat feed")
	return "", ""
}

// TestMultiEdge runs the multi-edge configurations as they are deployed,
// on loopback: a real Redis, the control, then an edge. The edge takes
// the control's feed snapshot and policy from Redis and blocks a threat.
func TestMultiEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	redis := testutil.StartRedis(t)
	loop := func() string { return fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) }
	const token = "deploy-test-admin-token-0123456789abcdef"

	controlAdmin := loop()
	control := startCordon(t, "control", localConfig(t, "cordon-control.yaml", redis.URL(), map[string]string{"admin": controlAdmin}),
		"CORDON_ADMIN_TOKEN="+token, "CORDON_REDIS_PASSWORD=")
	control.waitReady(t, controlAdmin)

	edgeAdmin, edgeProxy, edgeDNS := loop(), loop(), loop()
	edge := startCordon(t, "edge", localConfig(t, "cordon-edge.yaml", redis.URL(), map[string]string{
		"admin": edgeAdmin, "proxy": edgeProxy, "dns": edgeDNS,
	}), "CORDON_ADMIN_TOKEN=", "CORDON_REDIS_PASSWORD=")
	edge.waitReady(t, edgeAdmin)

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(url, tok string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(b)
	}

	// The control serves the API behind the token, with deploy/policy.yaml
	// applied from policy.file.
	if code, _ := get("http://"+controlAdmin+"/api/v1/policy", ""); code != http.StatusUnauthorized {
		t.Errorf("control GET /api/v1/policy without a token: %d, want 401", code)
	}
	if code, body := get("http://"+controlAdmin+"/api/v1/policy", token); code != http.StatusOK || !strings.Contains(body, "block-threats") {
		t.Errorf("control GET /api/v1/policy: %d %.200q, want 200 with the rules of deploy/policy.yaml", code, body)
	}
	// The edge serves traffic, PAC and health, not the admin API.
	if code, _ := get("http://"+edgeAdmin+"/api/v1/policy", token); code != http.StatusNotFound {
		t.Errorf("edge GET /api/v1/policy: %d, want 404 (the API runs on the control)", code)
	}
	if code, body := get("http://"+edgeAdmin+"/proxy.pac", ""); code != http.StatusOK || !strings.Contains(body, "PROXY "+edgeProxy) {
		t.Errorf("edge GET /proxy.pac: %d, want 200 offering PROXY %s:\n%.300s", code, edgeProxy, body)
	}

	// A threat from the bundled feeds is blocked by the edge's DNS filter
	// with the snapshot and policy it took from Redis: NXDOMAIN (the
	// policy's dns_block_mode) with Extended DNS Error 15 "Blocked".
	host, feed := threatHost(t)
	for _, network := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(host), dns.TypeA)
		m.SetEdns0(1232, false)
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		r, _, err := c.Exchange(m, edgeDNS)
		if err != nil {
			t.Fatalf("DNS %s %s @%s: %v", network, host, edgeDNS, err)
		}
		if r.Rcode != dns.RcodeNameError {
			t.Errorf("DNS %s %s (feed %s): rcode %s, want NXDOMAIN", network, host, feed, dns.RcodeToString[r.Rcode])
		}
		ede := false
		if opt := r.IsEdns0(); opt != nil {
			for _, o := range opt.Option {
				if e, ok := o.(*dns.EDNS0_EDE); ok && e.InfoCode == dns.ExtendedErrorCodeBlocked {
					ede = true
				}
			}
		}
		if !ede {
			t.Errorf("DNS %s %s: no Extended DNS Error 15 (Blocked) in %v", network, host, r)
		}
	}

	// The same over DoH on the edge's admin listener (RFC 8484 GET).
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), dns.TypeA)
	m.Id = 0
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+edgeAdmin+"/dns-query?dns="+base64.RawURLEncoding.EncodeToString(wire), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/dns-message")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("DoH %s: %v", host, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	r := new(dns.Msg)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("DoH %s: HTTP %d %.200q", host, resp.StatusCode, body)
	} else if err := r.Unpack(body); err != nil {
		t.Errorf("DoH %s: %v", host, err)
	} else if r.Rcode != dns.RcodeNameError {
		t.Errorf("DoH %s: rcode %s, want NXDOMAIN", host, dns.RcodeToString[r.Rcode])
	}
}

// loadCompose loads compose.yaml as Docker Compose does: the compose-spec
// schema, interpolation from env, merge keys, normalization.
func loadCompose(t *testing.T, env map[string]string) (*composetypes.Project, error) {
	t.Helper()
	abs, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return composeloader.LoadWithContext(t.Context(), composetypes.ConfigDetails{
		WorkingDir:  abs,
		ConfigFiles: []composetypes.ConfigFile{{Filename: filepath.Join(abs, "compose.yaml")}},
		Environment: env,
	}, func(o *composeloader.Options) { o.SetProjectName("cordon", true) })
}

func TestComposeSchema(t *testing.T) {
	const token = "compose-test-token"
	p, err := loadCompose(t, map[string]string{"CORDON_ADMIN_TOKEN": token})
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	names := p.ServiceNames()
	sort.Strings(names)
	if want := []string{"control", "edge-1", "edge-2", "redis"}; !slices.Equal(names, want) {
		t.Errorf("compose.yaml services %v, want %v", names, want)
	}
	for _, name := range []string{"control", "edge-1", "edge-2"} {
		s := p.Services[name]
		if s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("compose %s: build %+v, want deploy/Dockerfile", name, s.Build)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("compose %s: read_only %v cap_drop %v after merging x-cordon", name, s.ReadOnly, s.CapDrop)
		}
		if _, ok := s.DependsOn["redis"]; !ok {
			t.Errorf("compose %s: does not depend on redis", name)
		}
	}
	if tok := p.Services["control"].Environment["CORDON_ADMIN_TOKEN"]; tok == nil || *tok != token {
		t.Errorf("compose control: CORDON_ADMIN_TOKEN = %v, want it from the environment", tok)
	}
	if _, ok := p.Services["edge-1"].Environment["CORDON_ADMIN_TOKEN"]; ok {
		t.Errorf("compose edge-1: gets the admin token; edges run no admin API")
	}
	// Compose and Kubernetes run the same images.
	o := loadK8s(t)
	images := map[string]string{}
	for _, d := range o.deployments {
		images[d.Spec.Template.Spec.Containers[0].Image] = "cordon"
	}
	for _, st := range o.statefulSets {
		images[st.Spec.Template.Spec.Containers[0].Image] = "redis"
	}
	for _, name := range []string{"control", "edge-1", "edge-2", "redis"} {
		want := "cordon"
		if name == "redis" {
			want = "redis"
		}
		if img := p.Services[name].Image; images[img] != want {
			t.Errorf("compose %s: image %q, while Kubernetes runs %v", name, img, images)
		}
	}

	// Without a token the project refuses to load: no control starts
	// with a token nobody knows.
	if _, err := loadCompose(t, map[string]string{}); err == nil || !strings.Contains(err.Error(), "CORDON_ADMIN_TOKEN") {
		t.Errorf("compose.yaml without CORDON_ADMIN_TOKEN: err %v, want a refusal naming it", err)
	}
}

// TestImageBinary checks the binary the Dockerfile's go build step made
// (TestMain builds it with that step): static, as the distroless static
// runtime requires, with the VERSION build argument stamped in.
func TestImageBinary(t *testing.T) {
	bin := cordon(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a dynamic interpreter: it cannot run on distroless static", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("%s links %v: it cannot run on distroless static", bin, libs)
	}
	if *binaryArg != "" {
		return
	}
	b, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(b), testVersion) {
		t.Errorf("cordon version: %v %q, want the VERSION build argument %s", err, b, testVersion)
	}
}

// TestImageDefaultCommand runs the image's default command (all in one,
// no configuration file) with its paths and ports moved to a temporary
// directory and loopback: it becomes ready and writes the generated admin
// token into the data volume, readable by its owner only.
func TestImageDefaultCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	var args []string
	for _, in := range dockerfile(t) {
		if in.cmd == "CMD" {
			args = execForm(t, in)
		}
	}
	flags := serveArgs(t, "Dockerfile CMD", args)
	data := filepath.Join(t.TempDir(), "data")
	admin := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	var run []string
	for i := 0; i < len(args); i++ {
		switch a := strings.TrimLeft(args[i], "-"); {
		case a == "data-dir":
			run = append(run, args[i], data)
			i++
		case a == "admin-listen":
			run = append(run, args[i], admin)
			i++
		default:
			run = append(run, args[i])
		}
	}
	if flags["data-dir"] == "" || flags["admin-listen"] == "" {
		t.Fatalf("Dockerfile CMD %q: want --data-dir and --admin-listen", args)
	}
	run = append(run,
		"--proxy-listen", fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
		"--dns-listen", fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)))
	p := startCordonArgs(t, "image default command", t.TempDir(), run, "CORDON_ADMIN_TOKEN=", "CORDON_REDIS_PASSWORD=")
	p.waitReady(t, admin)
	fi, err := os.Stat(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatalf("no generated admin token in the data directory: %v", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("admin.token mode %v, want 0600", fi.Mode().Perm())
	}
	resp, err := http.Get("http://" + admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %d, want 200", resp.StatusCode)
	}
}
