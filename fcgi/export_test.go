package fcgi

// Test helpers shared with the external test package.

// PollUntil is pollUntil for the interop and replay tests.
var PollUntil = pollUntil
