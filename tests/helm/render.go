// Command render renders a Helm chart the way `helm template` does, without helm: Go's
// text/template with sprig plus the functions Helm adds (include, tpl, required, toYaml,
// fromYaml, toJson, fromJson, lookup) and Helm's objects (.Values, .Release, .Chart,
// .Capabilities, .Files, .Template). No helm binary can be installed here, so the chart tests
// build this from Debian's Go packages in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render tests/helm/render.go
//	render --values merged.yaml [--notes] helm/podbw
//
// Values merging (chart defaults + -f files) and values.schema.json validation happen in the
// Python test harness; this program takes the merged values as one file. Where it follows Helm
// closely, it says so: numbers in values are float64 (Helm reads values through JSON),
// "<no value>" is erased from output, missing keys render as zero values, symlinks under the
// chart are followed, and Chart.yaml's kubeVersion is checked against --kube-version.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

// recursionMax bounds `include` nesting as Helm does, so a self-including helper fails
// instead of exhausting the stack.
const recursionMax = 1000

// Metadata is Chart.yaml; the Go field names are the ones templates use (.Chart.AppVersion).
type Metadata struct {
	APIVersion   string            `yaml:"apiVersion"`
	Name         string            `yaml:"name"`
	Version      string            `yaml:"version"`
	KubeVersion  string            `yaml:"kubeVersion"`
	Description  string            `yaml:"description"`
	Type         string            `yaml:"type"`
	Keywords     []string          `yaml:"keywords"`
	Home         string            `yaml:"home"`
	Sources      []string          `yaml:"sources"`
	Icon         string            `yaml:"icon"`
	AppVersion   string            `yaml:"appVersion"`
	Deprecated   bool              `yaml:"deprecated"`
	Annotations  map[string]string `yaml:"annotations"`
	Maintainers  []Maintainer      `yaml:"maintainers"`
	Dependencies []interface{}     `yaml:"dependencies"`
}

type Maintainer struct {
	Name  string `yaml:"name"`
	Email string `yaml:"email"`
	URL   string `yaml:"url"`
}

// VersionSet is .Capabilities.APIVersions.
type VersionSet []string

// Has reports whether a group/version ("monitoring.coreos.com/v1") or a
// group/version/kind is served.
func (v VersionSet) Has(apiVersion string) bool {
	for _, have := range v {
		if have == apiVersion {
			return true
		}
	}
	return false
}

type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k KubeVersion) String() string { return k.Version }

type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

// builtinAPIVersions is what `helm template` assumes without --api-versions: the core
// groups, none of the CRDs (so monitoring.coreos.com/v1 is absent unless passed).
var builtinAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1",
	"rbac.authorization.k8s.io/v1", "storage.k8s.io/v1", "scheduling.k8s.io/v1",
	"coordination.k8s.io/v1", "discovery.k8s.io/v1", "apiextensions.k8s.io/v1",
	"admissionregistration.k8s.io/v1", "certificates.k8s.io/v1", "node.k8s.io/v1",
}

// Files is .Files: every chart file outside templates/ and the chart's own metadata, read
// through symlinks (Helm follows them when it loads or packages a chart).
type Files map[string][]byte

func (f Files) GetBytes(name string) []byte { return f[name] }

func (f Files) Get(name string) string { return string(f[name]) }

// Glob matches with path.Match: `*` stays inside one directory, as in Helm.
func (f Files) Glob(pattern string) (Files, error) {
	out := Files{}
	for name, data := range f {
		ok, err := path.Match(pattern, name)
		if err != nil {
			return nil, err
		}
		if ok {
			out[name] = data
		}
	}
	return out, nil
}

func (f Files) Lines(name string) []string {
	text := f.Get(name)
	if text == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

type renderer struct {
	chartDir    string
	chart       Metadata
	values      map[string]interface{}
	files       Files
	templates   map[string]string // "podbw/templates/x.yaml" -> source
	release     map[string]interface{}
	caps        Capabilities
	includeNest map[string]int
}

func main() {
	valuesPath := flag.String("values", "", "merged values file (YAML); default: the chart's values.yaml")
	releaseName := flag.String("release-name", "podbw", "release name (.Release.Name)")
	namespace := flag.String("namespace", "default", "release namespace (.Release.Namespace)")
	kubeVersion := flag.String("kube-version", "v1.30.0", "Kubernetes version (.Capabilities.KubeVersion)")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	var apiVersions multiFlag
	flag.Var(&apiVersions, "api-versions", "extra served API version, repeatable (as helm's --api-versions)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: render [flags] CHART_DIR")
		os.Exit(2)
	}
	r, err := load(flag.Arg(0), *valuesPath, *releaseName, *namespace, *kubeVersion, apiVersions)
	if err == nil {
		var out string
		out, err = r.render(*notes)
		if err == nil {
			fmt.Print(out)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func load(chartDir, valuesPath, releaseName, namespace, kubeVersion string, apiVersions []string) (*renderer, error) {
	r := &renderer{chartDir: chartDir, files: Files{}, templates: map[string]string{}}
	raw, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(raw, &r.chart); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %w", err)
	}
	if r.chart.APIVersion != "v2" || r.chart.Name == "" || r.chart.Version == "" {
		return nil, errors.New("Chart.yaml: apiVersion v2, name and version are required")
	}
	if valuesPath == "" {
		valuesPath = filepath.Join(chartDir, "values.yaml")
	}
	if r.values, err = readValues(valuesPath); err != nil {
		return nil, err
	}
	if err := r.readFiles(); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(kubeVersion, "v") {
		kubeVersion = "v" + kubeVersion
	}
	parts := strings.SplitN(strings.TrimPrefix(kubeVersion, "v"), ".", 3)
	if len(parts) < 2 {
		return nil, fmt.Errorf("--kube-version %q: want vMAJOR.MINOR.PATCH", kubeVersion)
	}
	r.caps = Capabilities{
		KubeVersion: KubeVersion{Version: kubeVersion, Major: parts[0], Minor: parts[1], GitVersion: kubeVersion},
		APIVersions: append(append(VersionSet{}, builtinAPIVersions...), apiVersions...),
		HelmVersion: map[string]string{"version": "v3-compatible"},
	}
	if r.chart.KubeVersion != "" {
		// Helm refuses to render for a cluster outside the chart's kubeVersion range.
		semverCompare := sprig.TxtFuncMap()["semverCompare"].(func(string, string) (bool, error))
		ok, err := semverCompare(r.chart.KubeVersion, kubeVersion)
		if err != nil {
			return nil, fmt.Errorf("Chart.yaml kubeVersion: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", r.chart.KubeVersion, kubeVersion)
		}
	}
	r.release = map[string]interface{}{
		"Name": releaseName, "Namespace": namespace, "Service": "Helm",
		"IsInstall": true, "IsUpgrade": false, "Revision": 1,
	}
	return r, nil
}

// readValues loads YAML the way Helm does (through JSON): maps have string keys and every
// number is a float64, so `{{ .Values.big }}` prints 1e+06 here exactly when it would in Helm.
func readValues(file string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var doc interface{}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if doc == nil {
		return map[string]interface{}{}, nil
	}
	values, ok := jsonish(doc).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: values must be a mapping", file)
	}
	return values, nil
}

func jsonish(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, item := range t {
			out[k] = jsonish(item)
		}
		return out
	case map[interface{}]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, item := range t {
			out[fmt.Sprint(k)] = jsonish(item)
		}
		return out
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, item := range t {
			out[i] = jsonish(item)
		}
		return out
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case uint64:
		return float64(t)
	case time.Time:
		return t.Format(time.RFC3339)
	default:
		return v
	}
}

// readFiles walks the chart, following symlinked files and directories, into .Files and the
// template set; a dangling symlink is an error, as it is for `helm package`.
func (r *renderer) readFiles() error {
	metadata := map[string]bool{"Chart.yaml": true, "values.yaml": true, "values.schema.json": true, "Chart.lock": true}
	return walk(r.chartDir, "", func(rel string, data []byte) {
		switch {
		case strings.HasPrefix(rel, "templates/"):
			r.templates[r.chart.Name+"/"+rel] = string(data)
		case strings.HasPrefix(rel, "charts/") || metadata[rel]:
		default:
			r.files[rel] = data
		}
	})
}

func walk(dir, rel string, visit func(string, []byte)) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, entry := range entries {
		full := filepath.Join(dir, entry.Name())
		name := path.Join(rel, entry.Name())
		info, err := os.Stat(full) // follows symlinks
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: dangling symlink", name)
			}
			return err
		}
		if info.IsDir() {
			if err := walk(full, name, visit); err != nil {
				return err
			}
			continue
		}
		data, err := os.ReadFile(full)
		if err != nil {
			return err
		}
		visit(name, data)
	}
	return nil
}

func (r *renderer) funcMap() template.FuncMap {
	fm := sprig.TxtFuncMap()
	// Helm removes these: a chart must not depend on the environment of whoever renders it.
	delete(fm, "env")
	delete(fm, "expandenv")
	fm["toYaml"] = toYAML
	fm["fromYaml"] = fromYAML
	fm["fromYamlArray"] = fromYAMLArray
	fm["required"] = required
	fm["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil // `helm template` has no cluster to ask
	}
	fm["include"] = func(string, interface{}) (string, error) { return "", nil } // replaced below
	fm["tpl"] = func(string, interface{}) (string, error) { return "", nil }     // replaced below
	return fm
}

func (r *renderer) bindIncludeAndTpl(t *template.Template, fm template.FuncMap) {
	fm["include"] = func(name string, data interface{}) (string, error) {
		if r.includeNest[name] > recursionMax {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		r.includeNest[name]++
		defer func() { r.includeNest[name]-- }()
		var buf bytes.Buffer
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	fm["tpl"] = func(text string, vals interface{}) (string, error) {
		// As Helm: parse the string in a clone of the whole set, so it can include helpers.
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		cloneFuncs := template.FuncMap{}
		for k, v := range fm {
			cloneFuncs[k] = v
		}
		r.bindIncludeAndTpl(clone, cloneFuncs)
		clone.Funcs(cloneFuncs)
		name := "tpl"
		if top, ok := vals.(map[string]interface{}); ok {
			if tmpl, ok := top["Template"].(map[string]interface{}); ok {
				name = fmt.Sprint(tmpl["Name"])
			}
		}
		parsed, err := clone.New(name).Parse(text)
		if err != nil {
			return "", fmt.Errorf("tpl: %w", err)
		}
		var buf bytes.Buffer
		if err := parsed.Execute(&buf, vals); err != nil {
			return "", fmt.Errorf("tpl: %w", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	t.Funcs(fm)
}

// toYAML marshals through JSON as Helm's (sigs.k8s.io/yaml) does: map keys sorted, and a
// float64 that holds an integer written as one (1000000, not 1e+06).
func toYAML(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return "" // Helm swallows marshalling errors too
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return ""
	}
	plainStyle(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return ""
	}
	_ = enc.Close()
	return strings.TrimSuffix(buf.String(), "\n")
}

// plainStyle drops the JSON look (quoted strings, flow collections); the encoder quotes only
// what YAML needs quoted.
func plainStyle(n *yaml.Node) {
	n.Style = 0
	for _, child := range n.Content {
		plainStyle(child)
	}
}

func fromYAML(text string) map[string]interface{} {
	var doc interface{}
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	m, ok := jsonish(doc).(map[string]interface{})
	if !ok {
		return map[string]interface{}{"Error": "not a mapping"}
	}
	return m
}

func fromYAMLArray(text string) []interface{} {
	var doc interface{}
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return []interface{}{err.Error()}
	}
	list, ok := jsonish(doc).([]interface{})
	if !ok {
		return []interface{}{"not a list"}
	}
	return list
}

func required(warn string, val interface{}) (interface{}, error) {
	if val == nil {
		return val, errors.New(warn)
	}
	if s, ok := val.(string); ok && s == "" {
		return val, errors.New(warn)
	}
	return val, nil
}

func (r *renderer) top(templateName string) map[string]interface{} {
	return map[string]interface{}{
		"Values":       r.values,
		"Release":      r.release,
		"Chart":        r.chart,
		"Capabilities": r.caps,
		"Files":        r.files,
		"Subcharts":    map[string]interface{}{},
		"Template":     map[string]interface{}{"Name": templateName, "BasePath": r.chart.Name + "/templates"},
	}
}

// render executes every template whose name does not start with "_" and returns them as one
// stream in `helm template` form (`---` + `# Source:` per template), or only NOTES.txt.
func (r *renderer) render(notesOnly bool) (string, error) {
	r.includeNest = map[string]int{}
	fm := r.funcMap()
	root := template.New("gotpl").Option("missingkey=zero").Funcs(fm)
	r.bindIncludeAndTpl(root, fm)
	names := make([]string, 0, len(r.templates))
	for name := range r.templates {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := root.New(name).Parse(r.templates[name]); err != nil {
			return "", fmt.Errorf("parse error in %s", strings.TrimPrefix(err.Error(), "template: "))
		}
	}
	var out strings.Builder
	for _, name := range names {
		base := path.Base(name)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != notesOnly {
			continue
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, r.top(name)); err != nil {
			return "", fmt.Errorf("execution error in %s", strings.TrimPrefix(err.Error(), "template: "))
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if notesOnly {
			out.WriteString(text)
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimRight(text, "\n"))
	}
	return out.String(), nil
}
