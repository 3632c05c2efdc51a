package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// QuickTransform is the name of the transform quick mode builds from the
// command after "--".
const QuickTransform = "main"

// QuickUpstream is the name of the upstream quick mode builds from
// --upstream.
const QuickUpstream = "main"

// Quick builds the configuration for a run without a file:
//
//	fcgi-bridge --listen tcp:127.0.0.1:9000 [--upstream URL] -- cat
//
// listen may repeat (empty: the default listener). upstream is "" (the
// request body is the content), "http://…" or "https://…", "fcgi://unix:/path",
// "fcgi://HOST:PORT" or "file:/root". command is the pooled transform every
// route uses; empty means content passes through untransformed. FILTER
// requests transform their data; RESPONDER requests the upstream's answer.
func Quick(listen []string, upstream string, command []string) (*Config, error) {
	c := &Config{
		Server:    defaultServer(),
		Log:       defaultLog(),
		Transform: map[string]*Transform{},
		Upstream:  map[string]*Upstream{},
		File:      "(command line)",
	}
	if len(listen) == 0 {
		listen = []string{DefaultListenAddr}
	}
	for _, a := range listen {
		l := defaultListener()
		l.Addr = a
		c.Listen = append(c.Listen, &l)
	}
	var chain []string
	if len(command) > 0 {
		t := defaultTransform()
		t.Name = QuickTransform
		t.Command = append([]string(nil), command...)
		c.Transform[t.Name] = &t
		chain = []string{t.Name}
	}
	source := SourceBody
	if upstream != "" {
		u, err := quickUpstream(upstream)
		if err != nil {
			return nil, err
		}
		c.Upstream[u.Name] = u
		source = u.Name
	}
	filterRoute := defaultRoute()
	filterRoute.Name, filterRoute.Role, filterRoute.Source = "filter", RoleFilter, SourceData
	filterRoute.Transform = chain
	main := defaultRoute()
	main.Name, main.Role, main.Source = "main", RoleResponder, source
	main.Transform = chain
	c.Route = []*Route{&filterRoute, &main}
	c.inheritDebug()
	if errs := c.validate(&keyLines{exact: map[string]int{}, plain: map[string][]int{}}); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func quickUpstream(s string) (*Upstream, error) {
	u := defaultUpstream()
	u.Name = QuickUpstream
	switch {
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		u.Kind, u.URL = UpstreamHTTP, s
	case strings.HasPrefix(s, "fcgi://unix:"):
		u.Kind, u.Address = UpstreamFastCGI, "unix:"+strings.TrimPrefix(s, "fcgi://unix:")
	case strings.HasPrefix(s, "fcgi://"):
		u.Kind, u.Address = UpstreamFastCGI, "tcp:"+strings.TrimPrefix(s, "fcgi://")
	case strings.HasPrefix(s, "file:"):
		root := strings.TrimPrefix(strings.TrimPrefix(s, "file:"), "//")
		abs, err := filepath.Abs(root)
		if err != nil {
			return nil, fmt.Errorf("--upstream %q: %w", s, err)
		}
		u.Kind, u.Root = UpstreamFile, abs
	default:
		return nil, fmt.Errorf("--upstream %q: write http://HOST[:PORT]/, fcgi://unix:/PATH, fcgi://HOST:PORT or file:/ROOT", s)
	}
	return &u, nil
}

// ResolveCommand returns argv with a leading "@self" replaced by the path
// of the running executable, so a configuration can name the bridge's own
// built-in sample transforms without knowing where it is installed.
func ResolveCommand(argv []string) ([]string, error) {
	if len(argv) == 0 || argv[0] != SelfCommand {
		return argv, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", SelfCommand, err)
	}
	out := append([]string{self}, argv[1:]...)
	return out, nil
}
