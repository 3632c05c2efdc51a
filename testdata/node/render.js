'use strict';
// A transform for fcgi-bridge's tests, written against the npm package
// subprocess-middleware exactly as a renderer for subprocess_middleware is:
// it turns a JSON body into an HTML page and leaves other bodies alone.
//
// It reads the request URL from the X-Request-URL header the bridge adds.
// With --one-shot URL it renders one raw JSON body from stdin instead.
// A JSON body with a "__throw__" member makes the render throw: the library
// then answers 500 with the stack trace and the process keeps serving.
const { HTTPStream, transformResponse } = require('subprocess-middleware');

function escapeHTML(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

function toHTML(value, out) {
  if (Array.isArray(value)) {
    out.push('<ul>');
    for (const item of value) {
      out.push('<li>');
      toHTML(item, out);
      out.push('</li>');
    }
    out.push('</ul>');
  } else if (value !== null && typeof value === 'object') {
    out.push('<dl>');
    for (const [k, v] of Object.entries(value)) {
      out.push('<dt>', escapeHTML(k), '</dt><dd>');
      toHTML(v, out);
      out.push('</dd>');
    }
    out.push('</dl>');
  } else {
    out.push(escapeHTML(value));
  }
}

function render(body, res) {
  const type = String(res.getHeader('Content-Type') || '');
  if (!type.startsWith('application/json')) {
    return body;
  }
  const data = JSON.parse(body.toString('utf8'));
  if (data && data.__throw__) {
    throw new Error('render refused the input: ' + data.__throw__);
  }
  const url = res.getHeader('X-Request-URL') || '';
  const out = ['<!DOCTYPE html>\n<html><head><title>', escapeHTML(data.title || url), '</title></head>',
    '<body data-url="', escapeHTML(url), '">'];
  toHTML(data, out);
  out.push('</body></html>\n');
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('X-Rendered-By', 'render.js ' + process.pid);
  return Buffer.from(out.join(''));
}

if (process.argv.includes('--one-shot')) {
  // mod_ext_filter style, for comparison: one process per request, the raw
  // JSON on stdin, the HTML on stdout. The URL comes as an argument.
  const chunks = [];
  process.stdin.on('data', (c) => chunks.push(c));
  process.stdin.on('end', () => {
    const headers = { 'content-type': 'application/json', 'x-request-url': process.argv[process.argv.indexOf('--one-shot') + 1] || '' };
    const res = { getHeader: (n) => headers[n.toLowerCase()], setHeader: () => {} };
    process.stdout.write(render(Buffer.concat(chunks), res));
  });
} else {
  const app = transformResponse(render);
  process.stdin.pipe(new HTTPStream({ app: app, captureConsole: false })).pipe(process.stdout);
}
