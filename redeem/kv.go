package redeem

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/internal/kvwatch"
	"github.com/writ-dev/writ/issuer"
)

// KV bucket names: part of the wire contract, never rename.
const (
	BucketUsed        = "writ-grants-used"
	BucketNonces      = "writ-redeem-nonces"
	BucketRevocations = "writ-revocations"
)

// How long the buckets keep their entries. A used grant's entry must
// outlive the grant (a create-only write succeeds again once the entry is
// gone): no grant lives longer than issuer.MaxTTL, and Redeem refuses one
// whose expiry plus leeway lies beyond UsedTTL. A nonce must outlive any
// proof that carries it (twice the proof window, plus clock skew between
// redeemers). A revocation must outlive the grants minted before it.
const (
	UsedTTL       = issuer.MaxTTL + 2*issuer.MaxLeeway + time.Hour
	NonceTTL      = 4*MaxProofWindow + 2*issuer.MaxLeeway
	RevocationTTL = UsedTTL
)

var tokenHashPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// requestKey and tokenKey are the revocation bucket's keys for a request
// id and a token hash.
func requestKey(id string) string { return "request." + id }
func tokenKey(hash string) string { return "token." + strings.TrimPrefix(hash, "sha256:") }

// Revoke writes a revocation of a request's grant (by request id) and/or
// of one grant (by token hash, issuer.TokenHash) to the revocation bucket,
// which every running Redeemer watches. Pass either or both. It creates the
// bucket if it is missing. The caller also records a revoked event.
func Revoke(ctx context.Context, js jetstream.JetStream, requestID, tokenHash string, reason string) error {
	var keys []string
	if requestID != "" {
		if u, err := uuid.Parse(requestID); err != nil || u.String() != requestID {
			return fmt.Errorf("revoke: request id %q is not a lower-case UUID", requestID)
		}
		keys = append(keys, requestKey(requestID))
	}
	if tokenHash != "" {
		if !tokenHashPattern.MatchString(tokenHash) {
			return errors.New("revoke: token hash is not sha256:<64 hex digits>")
		}
		keys = append(keys, tokenKey(tokenHash))
	}
	if len(keys) == 0 {
		return errors.New("revoke: name a request id or a token hash")
	}
	if reason == "" {
		reason = "revoked"
	}
	kv, err := ensureBucket(ctx, js, bucketConfig(BucketRevocations, RevocationTTL, 0))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := kv.PutString(ctx, k, reason); err != nil {
			return fmt.Errorf("revoke: %w", err)
		}
	}
	return nil
}

// EnsureBuckets creates the redemption buckets (used grants, proof
// nonces, revocations) with replicas copies, those that do not exist yet.
func EnsureBuckets(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, c := range BucketConfigs(replicas) {
		if _, err := ensureBucket(ctx, js, c); err != nil {
			return err
		}
	}
	return nil
}

// BucketConfigs are the redemption buckets' configurations, with replicas
// copies: what EnsureBuckets creates and what Writ's guard
// (consumers.Guard) holds them to. Their TTLs are the least each needs.
func BucketConfigs(replicas int) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		bucketConfig(BucketUsed, UsedTTL, replicas), bucketConfig(BucketNonces, NonceTTL, replicas),
		bucketConfig(BucketRevocations, RevocationTTL, replicas),
	}
}

func bucketConfig(name string, ttl time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "writ redemption state",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
}

// ensureBucket opens a bucket, creating it if it is missing, and checks
// that it keeps entries at least as long as cfg says.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := kvwatch.Bucket(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %w", ErrUnavailable, cfg.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %w", ErrUnavailable, cfg.Bucket, err)
	}
	if ttl := st.TTL(); ttl != 0 && ttl < cfg.TTL {
		return nil, fmt.Errorf("%w: bucket %s keeps entries for %s; it must keep them at least %s (delete it to have it made anew)", ErrBucketTooShort, cfg.Bucket, ttl, cfg.TTL)
	}
	return kv, nil
}
