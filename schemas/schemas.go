package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.json
var files embed.FS

// FS holds the schema files, named "<event type>.json" plus "envelope.json".
func FS() fs.FS { return files }

const base = "https://writ.dev/schemas/"

var (
	// ErrUnknownType is returned for an event type that has no schema.
	ErrUnknownType = errors.New("schemas: unknown event type")
	// ErrInvalid wraps a validation failure.
	ErrInvalid = errors.New("schemas: invalid")
)

var (
	once     sync.Once
	compiled map[string]*jsonschema.Schema
	loadErr  error
)

func load() {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.UseRegexpEngine(compilePattern)
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		loadErr = err
		return
	}
	var types []string
	for _, e := range entries {
		b, err := files.ReadFile(e.Name())
		if err != nil {
			loadErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			loadErr = fmt.Errorf("schemas: %s: %w", e.Name(), err)
			return
		}
		if err := c.AddResource(base+e.Name(), doc); err != nil {
			loadErr = err
			return
		}
		if name := strings.TrimSuffix(e.Name(), ".json"); name != "envelope" {
			types = append(types, name)
		}
	}
	compiled = make(map[string]*jsonschema.Schema, len(types))
	for _, t := range types {
		s, err := c.Compile(base + t + ".json")
		if err != nil {
			loadErr = fmt.Errorf("schemas: compile %s: %w", t, err)
			return
		}
		compiled[t] = s
	}
}

// Types lists the event types that have a schema.
func Types() []string {
	once.Do(load)
	out := make([]string, 0, len(compiled))
	for t := range compiled {
		out = append(out, t)
	}
	return out
}

// Validate checks body against the schema for eventType.
func Validate(eventType string, body []byte) error {
	once.Do(load)
	if loadErr != nil {
		return loadErr
	}
	s, ok := compiled[eventType]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownType, eventType)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: not JSON: %v", ErrInvalid, err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, oneLine(err))
	}
	return nil
}

// oneLine keeps the most specific cause of a validation error on one line,
// so that it fits in a rejection reason.
func oneLine(err error) string {
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		for len(ve.Causes) > 0 {
			ve = ve.Causes[0]
		}
		msg := ve.Error()
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
		return "/" + strings.Join(ve.InstanceLocation, "/") + ": " + msg
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
