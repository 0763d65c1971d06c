// Package docs holds loaderd's design pages: SPEC.md, the contract users
// rely on, and DESIGN.md, how the code meets it. It has no code; its test
// keeps DESIGN.md's package list and import diagram true to `go list`.
package docs
