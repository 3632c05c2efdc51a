// Package examples holds the deployment files for the web servers and for
// systemd (nginx.conf, lighttpd.conf, haproxy.cfg, Caddyfile,
// fcgi-bridge.service, fcgi-bridge.socket; apache-example.conf sits at the
// repository root). It has no code: its test runs each server's own syntax
// check on the files, so an example that no longer loads fails the build.
package examples
