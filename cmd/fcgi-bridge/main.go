// Command fcgi-bridge is the daemon: web servers reach it over FastCGI, and
// it answers with content piped through transform processes.
//
//	fcgi-bridge                                   the embedded default configuration
//	fcgi-bridge -c /etc/fcgi-bridge.toml          a configuration file
//	fcgi-bridge -t -c FILE                        check the file and exit
//	fcgi-bridge -T [-c FILE]                      print the effective configuration
//	fcgi-bridge --listen unix:/run/x.sock -- CMD ARGS...
//	                                              quick mode: every request through a pool of CMD
//	fcgi-bridge transform NAME                    run a built-in sample transform (stdin/stdout)
//	fcgi-bridge transform-check COMMAND ARGS...   try a transform against a sample message
//
// This file turns the command line into a configuration; daemon.go wires the
// configuration to the FastCGI server, the listeners and the signals.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/listen"
	"github.com/fcgi-bridge/fcgi-bridge/sample"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "devel"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// options is what the command line asked for.
type options struct {
	configFile      string
	test, dump      bool
	showVersion     bool
	listen          []string
	upstream        string
	logFormat       string
	logLevel        string
	shutdownTimeout time.Duration
	debug           bool
	command         []string // after "--": quick mode
}

func (o *options) quick() bool { return len(o.command) > 0 || o.upstream != "" }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "transform" {
		return runTransform(args[1:], stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "transform-check" {
		return runCheck(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "help" {
		args = []string{"--help"}
	}
	var usage bytes.Buffer
	o, err := parseFlags(args, &usage, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		// Asked for: the usage is the answer, so it goes where a pager or
		// grep reads it.
		stdout.Write(usage.Bytes())
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "fcgi-bridge: %v (fcgi-bridge --help lists the flags)\n", err)
		return 2
	}
	if o.showVersion {
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	cfg, err := loadConfig(o)
	if err == nil && o.test {
		// Warnings do not fail the check; they are said before its verdict.
		for _, w := range cfg.Warnings() {
			fmt.Fprintf(stderr, "fcgi-bridge: warning: %v\n", w)
		}
		err = checkCommands(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fcgi-bridge: %v\n", err)
		return 1
	}
	switch {
	case o.test:
		for _, w := range cfg.DebugWarnings() {
			fmt.Fprintf(stderr, "fcgi-bridge: warning: %s\n", w)
		}
		fmt.Fprintf(stdout, "fcgi-bridge: configuration %s is valid\n", cfg.File)
		for _, inc := range cfg.Included() {
			fmt.Fprintf(stdout, "  included %s\n", inc)
		}
		return 0
	case o.dump:
		if err := cfg.Encode(stdout); err != nil {
			fmt.Fprintf(stderr, "fcgi-bridge: print the configuration: %v\n", err)
			return 1
		}
		return 0
	}
	return serve(o, cfg, stderr)
}

// parseFlags parses the command line; the usage text, when pflag shows it
// (for --help, or after a bad flag), goes to usage.
func parseFlags(args []string, usage, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := pflag.NewFlagSet("fcgi-bridge", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVarP(&o.configFile, "config", "c", "", "configuration `FILE` (TOML); without it the embedded default runs")
	fs.BoolVarP(&o.test, "test", "t", false, "check the configuration and exit: 0 when valid, 1 with FILE:LINE: problem")
	fs.BoolVarP(&o.dump, "dump", "T", false, "print the effective configuration (defaults filled in) and exit")
	fs.StringArrayVar(&o.listen, "listen", nil, "listen on `SPEC`: tcp:HOST:PORT, unix:PATH or systemd:NAME; repeatable; replaces the configured listeners")
	fs.StringVar(&o.upstream, "upstream", "", "quick mode content source `URL`: http://HOST/..., https://HOST/..., fcgi://unix:/PATH, fcgi://HOST:PORT or file:/ROOT")
	fs.StringVar(&o.logFormat, "log-format", "", "log format: text or json (overrides log.format)")
	fs.StringVar(&o.logLevel, "log-level", "", "log level: debug, info, warn or error (overrides log.level)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 0, "how long TERM waits for requests in flight (overrides server.shutdown_timeout)")
	fs.BoolVar(&o.debug, "debug", false, "developer mode: a failing transform's error answer shows why (phase, exit, stderr, reply); overrides server.debug and every route's debug; never on a listener others reach")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.Usage = func() {
		fs.SetOutput(usage)
		defer fs.SetOutput(stderr)
		fmt.Fprintf(usage, "Usage:\n"+
			"  fcgi-bridge [flags]                      serve (the embedded default without -c)\n"+
			"  fcgi-bridge [flags] -- COMMAND [ARG...]  quick mode: every request through a pool of COMMAND\n"+
			"  fcgi-bridge transform NAME               run a built-in sample transform (%s)\n"+
			"  fcgi-bridge transform-check COMMAND ...  try a transform against a sample message, with hints\n"+

			"  fcgi-bridge help                         this text (also --help)\n\nFlags:\n",
			strings.Join(sample.Names(), ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	rest := fs.Args()
	if dash := fs.ArgsLenAtDash(); dash >= 0 {
		if dash > 0 {
			return nil, fmt.Errorf("unexpected argument %q before --", rest[0])
		}
		o.command = rest
		if len(o.command) == 0 {
			return nil, errors.New("-- must be followed by the transform command, e.g. -- cat")
		}
	} else if len(rest) > 0 {
		return nil, fmt.Errorf("unexpected argument %q (a transform command goes after --, e.g. fcgi-bridge -- %s)", rest[0], rest[0])
	}
	switch o.logFormat {
	case "", "text", "json":
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
	}
	if o.logLevel != "" {
		if _, err := conf.ParseLevel(o.logLevel); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
	}
	if o.configFile != "" && o.quick() {
		return nil, errors.New("-c and quick mode (--upstream or -- COMMAND) exclude each other; put the command in the file's [transform] table")
	}
	for _, l := range o.listen {
		if _, err := listen.ParseSpec(l); err != nil {
			return nil, fmt.Errorf("--listen: %w", err)
		}
	}
	return o, nil
}

// loadConfig builds the configuration the options describe: a file, quick
// mode, or the embedded default; then the command-line overrides.
func loadConfig(o *options) (*conf.Config, error) {
	var cfg *conf.Config
	var err error
	switch {
	case o.configFile != "":
		cfg, err = conf.Load(o.configFile)
	case o.quick():
		cfg, err = conf.Quick(nil, o.upstream, o.command)
	default:
		cfg = conf.Default()
	}
	if err != nil {
		return nil, err
	}
	if len(o.listen) > 0 {
		if cfg.Listen, err = listenOverrides(o.listen); err != nil {
			return nil, err
		}
	}
	if o.logFormat != "" {
		cfg.Log.Format = o.logFormat
	}
	if o.logLevel != "" {
		cfg.Log.Level = o.logLevel
	}
	if o.shutdownTimeout > 0 {
		cfg.Server.ShutdownTimeout = conf.Duration(o.shutdownTimeout)
	}
	if o.debug {
		cfg.SetDebug()
	}
	return cfg, nil
}

// listenOverrides turns --listen specs (already checked by listen.ParseSpec,
// which also knows systemd:NAME) into listeners with the defaults a file's
// [[listen]] gets: the mode and allow list of conf's default listener.
func listenOverrides(specs []string) ([]*conf.Listener, error) {
	tmpl, err := conf.Quick(nil, "", nil)
	if err != nil || len(tmpl.Listen) == 0 {
		return nil, fmt.Errorf("default listener settings: %v", err)
	}
	out := make([]*conf.Listener, len(specs))
	for i, spec := range specs {
		l := *tmpl.Listen[0]
		l.Addr = spec
		l.Allow = append([]string(nil), l.Allow...)
		out[i] = &l
	}
	return out, nil
}

// checkCommands finds the program and scripts of every transform, so
// that -t catches a missing one before a deployment does.
func checkCommands(cfg *conf.Config) error {
	var errs []error
	for _, e := range cfg.CheckPrograms() {
		errs = append(errs, e)
	}
	for i, l := range cfg.Listen {
		if _, err := listen.ParseSpec(l.Addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: listen.%d.addr: %w", cfg.File, i, err))
		}
	}
	return errors.Join(errs...)
}

func runTransform(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
		transformUsage(stdout)
		return 0
	}
	if len(args) != 1 {
		transformUsage(stderr)
		return 2
	}
	if err := sample.Run(args[0], stdin, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "fcgi-bridge transform: %v\n", err)
		return 1
	}
	return 0
}

func transformUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: fcgi-bridge transform NAME\n\nBuilt-in sample transforms (they speak the pipe protocol on stdin/stdout):")
	for _, n := range sample.Names() {
		fmt.Fprintf(w, "  %-10s %s\n", n, sample.Help(n))
	}
}

func versionLine() string {
	return fmt.Sprintf("fcgi-bridge %s (%s %s/%s)", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildVersion is what this binary was built from; see versionOf.
func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(version, bi)
}

// versionOf names the build: the version given at link time (a release
// build: -ldflags "-X main.version=v1.2.3"), else the module version `go
// install …@v1.2.3` records, else the commit a build from a checkout was
// made from (with "-dirty" when it had uncommitted changes), so that any
// binary can be traced to its source.
func versionOf(linked string, bi *debug.BuildInfo) string {
	if linked != "" && linked != "devel" {
		return linked
	}
	if bi == nil {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
