// Command render renders a Helm chart the way `helm template` does, for
// tests on machines without helm: Go templates with sprig and Helm's own
// functions, values coalesced from values.yaml and -f files and passed
// through JSON as Helm does (so every number is a float64), and a YAML
// stream of the rendered templates with "# Source:" comments.
//
//	render [-name RELEASE] [-namespace NS] [-f values.yaml]... CHART_DIR
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Files is .Files: the chart's files other than its templates.
type Files struct{ dir string }

func (f Files) Get(name string) string {
	clean := path.Clean("/" + name)[1:]
	if strings.HasPrefix(clean, "templates/") {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(f.dir, clean))
	if err != nil {
		return ""
	}
	return string(data)
}

// jsonValues reads YAML as Helm does: YAML to JSON, then JSON to Go, so
// that integers become float64.
func jsonValues(data []byte) (map[string]interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	j, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if string(j) != "null" {
		err = json.Unmarshal(j, &out)
	}
	return out, err
}

// coalesce merges over into base: maps deeply, a null deletes the key.
func coalesce(base, over map[string]interface{}) map[string]interface{} {
	for k, v := range over {
		if v == nil {
			delete(base, k)
			continue
		}
		bm, bok := base[k].(map[string]interface{})
		om, ook := v.(map[string]interface{})
		if bok && ook {
			base[k] = coalesce(bm, om)
		} else {
			base[k] = v
		}
	}
	return base
}

// toYAML is Helm's toYaml: through JSON (numbers as written, maps sorted),
// without the trailing newline.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var node interface{}
	if err := yaml.Unmarshal(j, &node); err != nil {
		return ""
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(node); err != nil {
		return ""
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func funcMap(t **template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	// Helm removes these: a chart must not read the environment.
	delete(f, "env")
	delete(f, "expandenv")
	depth := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if depth[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		depth[name]++
		defer func() { depth[name]-- }()
		var b strings.Builder
		err := (*t).ExecuteTemplate(&b, name, data)
		return b.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := (*t).Clone()
		if err != nil {
			return "", err
		}
		inner, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		err = inner.Execute(&b, data)
		return strings.ReplaceAll(b.String(), "<no value>", ""), err
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if s, ok := v.(string); v == nil || (ok && s == "") {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	f["toYaml"] = toYAML
	f["toJson"] = func(v interface{}) string {
		j, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(j)
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m, err := jsonValues([]byte(s))
		if err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		return m
	}
	return f
}

func render(chartDir, release, namespace string, files []string) (string, error) {
	meta, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	var chart struct {
		APIVersion  string `yaml:"apiVersion"`
		Name        string `yaml:"name"`
		Version     string `yaml:"version"`
		AppVersion  string `yaml:"appVersion"`
		Description string `yaml:"description"`
		Type        string `yaml:"type"`
		KubeVersion string `yaml:"kubeVersion"`
	}
	if err := yaml.Unmarshal(meta, &chart); err != nil {
		return "", fmt.Errorf("Chart.yaml: %w", err)
	}
	values := map[string]interface{}{}
	for _, name := range append([]string{filepath.Join(chartDir, "values.yaml")}, files...) {
		data, err := os.ReadFile(name)
		if err != nil {
			return "", err
		}
		over, err := jsonValues(data)
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		values = coalesce(values, over)
	}

	base := chart.Name + "/templates"
	var t *template.Template
	t = template.New("chart").Funcs(funcMap(&t)).Option("missingkey=zero")
	paths, _ := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	sort.Strings(paths)
	var names []string
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		name := base + "/" + filepath.Base(p)
		if _, err := t.New(name).Parse(string(text)); err != nil {
			return "", err
		}
		names = append(names, name)
	}

	sep := regexp.MustCompile(`(?:^|\s*\n)---\s*`)
	var out strings.Builder
	for _, name := range names {
		file := path.Base(name)
		if strings.HasPrefix(file, "_") {
			continue
		}
		top := map[string]interface{}{
			"Values": values,
			"Chart":  chart,
			"Release": map[string]interface{}{
				"Name": release, "Namespace": namespace, "Service": "Helm",
				"IsInstall": true, "IsUpgrade": false, "Revision": 1,
			},
			"Template": map[string]interface{}{"Name": name, "BasePath": base},
			"Files":    Files{chartDir},
		}
		var b strings.Builder
		if err := t.ExecuteTemplate(&b, name, top); err != nil {
			return "", err
		}
		// Rendered, so that its errors fail, but not part of the manifests.
		if file == "NOTES.txt" {
			continue
		}
		for _, doc := range sep.Split(strings.ReplaceAll(b.String(), "<no value>", ""), -1) {
			if doc = strings.TrimSpace(doc); doc != "" {
				fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, doc)
			}
		}
	}
	return out.String(), nil
}

func main() {
	var files valueFiles
	flag.Var(&files, "f", "values file over the chart's values.yaml (repeatable)")
	release := flag.String("name", "release-name", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: render [-name RELEASE] [-namespace NS] [-f values.yaml]... CHART_DIR")
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), *release, *namespace, files)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	fmt.Print(out)
}
