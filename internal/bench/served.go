package bench

import (
	"context"
	"fmt"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
)

// openServed loads o.Setup, a setup served on o.Server by a `writ serve`
// of its own, and finds its streams there. It makes nothing of Writ's and,
// at close, deletes only the relay's stream. It reads the setup as a
// client does (`writ request`): its configuration, trust bundle and
// sample identities; the pipeline's keys stay with the process serving it.
func (e *env) openServed(ctx context.Context) error {
	cfg, err := config.Load(e.o.Setup)
	if err != nil {
		return fmt.Errorf("bench: setup: %w", err)
	}
	bundle, err := identity.LoadBundle(cfg.Path(cfg.Trust))
	if err != nil {
		return fmt.Errorf("bench: setup %s: %w", e.o.Setup, err)
	}
	e.rt = &config.Runtime{Config: cfg, Bundle: bundle}
	e.domain = cfg.Domain
	if e.creds == "" {
		// The bench makes its relay stream, asks as the setup's
		// principals and reads every stream's state: the operator's
		// rights (a setup from before roles: what serve connects with).
		e.creds = cfg.Path(cfg.Creds)
		if cfg.HasServerAuth() {
			e.creds = cfg.Path(config.OperatorCreds)
		}
	}
	e.urls = []string{e.o.Server}
	if err := e.openAdmin(); err != nil {
		return err
	}
	e.owned = []string{e.relay}
	for _, name := range []string{cfg.Stream.Timers, cfg.Stream.Name} {
		s, err := e.js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("bench: stream %s on %s (is 'writ serve --dir %s' serving there?): %w", name, e.o.Server, e.o.Setup, err)
		}
		// The relay is as replicated as the stream Writ writes, whatever
		// the file says.
		cfg.Stream.Replicas = s.CachedInfo().Config.Replicas
	}
	return nil
}
