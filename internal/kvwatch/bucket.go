package kvwatch

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket opens the bucket cfg names, creating it as cfg says when it does
// not exist yet (and opening it when another process just did).
func Bucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	return kv, err
}
