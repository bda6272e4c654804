package svcflags

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func list(values ...string) *List {
	var l List
	for _, v := range values {
		l.Set(v)
	}
	return &l
}

func TestTags(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   []string
		err    string
	}{
		{nil, []string{}, ""},
		{[]string{""}, []string{}, ""},
		{[]string{"web, api", "eu"}, []string{"web", "api", "eu"}, ""},
		{[]string{"a,,b, "}, []string{"a", "b"}, ""},
		{[]string{strings.Repeat("x", 55)}, []string{strings.Repeat("x", 55)}, ""},
		{[]string{strings.Repeat("x", 56)}, nil, "longer than 55"},
		{[]string{"bad\x7ftag"}, nil, "control character"},
		{[]string{"bad\u0085tag"}, nil, "control character"},
		{[]string{"1,2,3,4,5,6,7,8,9,10,11"}, nil, "at most 10"},
	} {
		got, err := list(tc.values...).Tags()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "--tags: ") {
				t.Errorf("Tags(%q) = %v, want an error with %q", tc.values, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) || got == nil {
			t.Errorf("Tags(%q) = %#v, %v; want %#v", tc.values, got, err, tc.want)
		}
	}
}

func TestMetadata(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   map[string]string
		err    string
	}{
		{nil, map[string]string{}, ""},
		{[]string{""}, map[string]string{}, ""},
		{[]string{"ip=10.0.0.1, port=80", "url=http://x/?a=b"}, map[string]string{"ip": "10.0.0.1", "port": "80", "url": "http://x/?a=b"}, ""},
		{[]string{" k =v v"}, map[string]string{"k": "v v"}, ""},
		{[]string{"ip="}, nil, "the value must have 1..255"},
		{[]string{"=x"}, nil, "the key must have 1..255"},
		{[]string{"novalue"}, nil, "is not a key=value pair"},
		{[]string{"a=1", "a=2"}, nil, `key "a" is given twice`},
		{[]string{"k=" + strings.Repeat("é", 256)}, nil, "the value must have 1..255"},
		{[]string{"k1=v,k2=v,k3=v,k4=v,k5=v,k6=v,k7=v,k8=v,k9=v,k10=v,k11=v,k12=v,k13=v,k14=v,k15=v,k16=v,k17=v,k18=v,k19=v,k20=v,k21=v"}, nil, "at most 20"},
	} {
		got, err := list(tc.values...).Metadata()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "--metadata: ") {
				t.Errorf("Metadata(%q) = %v, want an error with %q", tc.values, err, tc.err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) || got == nil {
			t.Errorf("Metadata(%q) = %#v, %v; want %#v", tc.values, got, err, tc.want)
		}
	}
}

func TestGiven(t *testing.T) {
	if list().Given() {
		t.Error("a flag never set is given")
	}
	if !list("").Given() {
		t.Error(`--tags "" is not given`)
	}
}
