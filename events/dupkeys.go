package events

import (
	"encoding/json"
	"strings"
)

// duplicateKey returns a key that appears twice in one object of body,
// which must be valid JSON. The schema check and Go's decoding disagree on
// such a body: the schema sees the last of the two, while decoding into a
// struct or map merges both, so what was checked is not what is used.
// Keys are compared as encoding/json matches them to struct fields:
// unescaped, and without regard to case.
func duplicateKey(body []byte) (string, bool) {
	s := keyScanner{b: body}
	return s.value()
}

type keyScanner struct {
	b []byte
	i int
}

func (s *keyScanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// value skips one value, reporting the first duplicate key inside it.
func (s *keyScanner) value() (string, bool) {
	s.ws()
	if s.i >= len(s.b) {
		return "", false
	}
	switch s.b[s.i] {
	case '{':
		return s.object()
	case '[':
		s.i++
		for {
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] == ']' {
				s.i++
				return "", false
			}
			if k, dup := s.value(); dup {
				return k, true
			}
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == ',' {
				s.i++
			}
		}
	case '"':
		s.str()
	default: // a number, true, false or null
		for s.i < len(s.b) && !strings.ContainsRune(",}] \t\n\r", rune(s.b[s.i])) {
			s.i++
		}
	}
	return "", false
}

func (s *keyScanner) object() (string, bool) {
	s.i++ // {
	var keys []string
	var seen map[string]bool // once an object has many keys
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] == '}' {
			s.i++
			return "", false
		}
		k := strings.ToLower(s.str())
		switch {
		case seen != nil:
			if seen[k] {
				return k, true
			}
			seen[k] = true
		default:
			for _, o := range keys {
				if o == k {
					return k, true
				}
			}
			if keys = append(keys, k); len(keys) > 16 {
				seen = make(map[string]bool, 2*len(keys))
				for _, o := range keys {
					seen[o] = true
				}
			}
		}
		s.ws()
		s.i++ // :
		if k, dup := s.value(); dup {
			return k, true
		}
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ',' {
			s.i++
		}
	}
}

// str reads a string at s.i, unescaped.
func (s *keyScanner) str() string {
	start := s.i
	s.i++ // "
	escaped := false
	for s.i < len(s.b) && s.b[s.i] != '"' {
		if s.b[s.i] == '\\' {
			escaped = true
			s.i++
		}
		s.i++
	}
	s.i++ // "
	raw := s.b[start:min(s.i, len(s.b))]
	if !escaped {
		return string(raw[1 : len(raw)-1])
	}
	var out string
	_ = json.Unmarshal(raw, &out)
	return out
}
