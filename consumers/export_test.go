package consumers

import "github.com/writ-dev/writ/events"

// SetBeforeDecide installs a hook called with each record a component is
// about to decide on; tests use it to make a handler fail. Set it before
// starting a pipeline, and reset it (nil) after.
func SetBeforeDecide(f func(events.Record)) { beforeDecide = f }
