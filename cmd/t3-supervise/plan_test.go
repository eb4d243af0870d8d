//go:build linux

package main

import (
	"os"
	"reflect"
	"testing"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
)

// The plan is data: what --dry-run prints and a real run carries out. A live object in it (a
// Vault client, a cgroup tree, an open file, a channel) would make the plan something a test
// cannot build and the dry run cannot show; such things travel beside it, in handles.
func TestPlanHoldsNoHandles(t *testing.T) {
	handle := map[reflect.Type]bool{
		reflect.TypeFor[*creds.Client](): true,
		reflect.TypeFor[*cgroup.Tree]():  true,
		reflect.TypeFor[*os.File]():      true,
	}
	seen := map[reflect.Type]bool{}
	var walk func(path string, ty reflect.Type)
	walk = func(path string, ty reflect.Type) {
		if seen[ty] {
			return
		}
		seen[ty] = true
		if _, closes := ty.MethodByName("Close"); handle[ty] || closes {
			t.Errorf("%s is a %v: a handle, not data", path, ty)
			return
		}
		switch ty.Kind() {
		case reflect.Chan, reflect.Func, reflect.UnsafePointer:
			t.Errorf("%s is a %v: a handle, not data", path, ty)
		case reflect.Pointer, reflect.Slice, reflect.Array:
			walk(path+"[]", ty.Elem())
		case reflect.Map:
			walk(path+"[key]", ty.Key())
			walk(path+"[]", ty.Elem())
		case reflect.Struct:
			for f := range ty.Fields() {
				walk(path+"."+f.Name, f.Type)
			}
		}
	}
	walk("plan", reflect.TypeFor[plan]())
	// The walk itself sees what a handle looks like.
	if _, closes := reflect.TypeFor[*creds.Client]().MethodByName("Close"); !closes {
		t.Error("*creds.Client has no Close: the test's rule for a handle no longer catches it")
	}
}
