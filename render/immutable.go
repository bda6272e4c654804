package render

import (
	"fmt"
	"reflect"
	"text/template"
	"text/template/parse"

	"github.com/svcreg/svcreg/registry"
)

// A template reads the snapshot every template shares, and the watcher
// builds the next one from it: a template must not change it. text/template
// has no assignment, and sortAlpha sorts a copy (funcs.go), but the
// elements of a slice a range walks are addressable, so a method with a
// pointer receiver can be called on them: {{range services}}{{.UnmarshalJSON
// ...}} would overwrite a shared service, and so would one of a field's
// ({{.LastSeen.UnmarshalText ...}}). Such methods of the types a template
// gets in shared slices, and of the types of their fields, are refused
// when the template is loaded.
var mutatingMethods = pointerOnlyMethods(reflect.TypeFor[registry.Service](), reflect.TypeFor[registry.ConfigValue]())

// pointerOnlyMethods are the names of the methods of *T that T lacks, for
// each of types and, as their fields are addressable too, for the types of
// their fields (and of the elements of those that are slices or arrays),
// all the way down.
func pointerOnlyMethods(types ...reflect.Type) map[string]bool {
	out := map[string]bool{}
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			t = t.Elem()
		}
		if seen[t] || t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface {
			return
		}
		seen[t] = true
		pt := reflect.PointerTo(t)
		for i := 0; i < pt.NumMethod(); i++ {
			if m := pt.Method(i); !hasMethod(t, m.Name) {
				out[m.Name] = true
			}
		}
		if t.Kind() == reflect.Struct {
			for i := 0; i < t.NumField(); i++ {
				walk(t.Field(i).Type)
			}
		}
	}
	for _, t := range types {
		walk(t)
	}
	return out
}

func hasMethod(t reflect.Type, name string) bool {
	_, ok := t.MethodByName(name)
	return ok
}

// checkImmutable refuses a template that names a mutating method.
func checkImmutable(tmpl *template.Template) error {
	for _, t := range tmpl.Templates() {
		if t.Tree == nil {
			continue
		}
		if name := findMutating(t.Tree.Root); name != "" {
			return fmt.Errorf("template %s: %s would change the registry snapshot every template shares; templates may not call it", t.Name(), name)
		}
	}
	return nil
}

// findMutating returns the first mutating method named under n, or "".
func findMutating(n parse.Node) string {
	if n == nil || reflect.ValueOf(n).IsNil() {
		return ""
	}
	var idents []string
	var children []parse.Node
	switch n := n.(type) {
	case *parse.ListNode:
		children = append(children, n.Nodes...)
	case *parse.ActionNode:
		children = append(children, n.Pipe)
	case *parse.PipeNode:
		for _, c := range n.Decl {
			children = append(children, c)
		}
		for _, c := range n.Cmds {
			children = append(children, c)
		}
	case *parse.CommandNode:
		children = append(children, n.Args...)
	case *parse.FieldNode:
		idents = n.Ident
	case *parse.VariableNode:
		idents = n.Ident
	case *parse.ChainNode:
		idents = n.Field
		children = append(children, n.Node)
	case *parse.IfNode:
		children = append(children, n.Pipe, n.List, n.ElseList)
	case *parse.RangeNode:
		children = append(children, n.Pipe, n.List, n.ElseList)
	case *parse.WithNode:
		children = append(children, n.Pipe, n.List, n.ElseList)
	case *parse.TemplateNode:
		children = append(children, n.Pipe)
	}
	for _, id := range idents {
		if mutatingMethods[id] {
			return id
		}
	}
	for _, c := range children {
		if name := findMutating(c); name != "" {
			return name
		}
	}
	return ""
}
