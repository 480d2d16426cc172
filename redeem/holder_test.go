package redeem_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

func TestRedeemAsHolder(t *testing.T) {
	f := start(t)
	id, token := f.grant(t)
	stranger := mustKey(t, nkeys.CreateUser)
	strangerPub, _ := stranger.PublicKey()

	_, err := f.r.RedeemAsHolder(t.Context(), token, strangerPub, nil)
	require.ErrorIs(t, err, issuer.ErrWrongHolder)

	refuse := errors.New("not today")
	_, err = f.r.RedeemAsHolder(t.Context(), token, f.holderPub, func(issuer.Claims) error { return refuse })
	require.ErrorIs(t, err, redeem.ErrNotAccepted)
	require.ErrorIs(t, err, refuse)
	assert.Equal(t, "not-accepted", redeem.Code(err))

	var seen issuer.Claims
	c, err := f.r.RedeemAsHolder(t.Context(), token, f.holderPub, func(c issuer.Claims) error { seen = c; return nil })
	require.NoError(t, err)
	assert.Equal(t, id, c.RequestID)
	assert.Equal(t, deploy.Action, seen.Action)

	_, err = f.r.RedeemAsHolder(t.Context(), token, f.holderPub, nil)
	require.ErrorIs(t, err, redeem.ErrAlreadyUsed)
	_, err = f.redeem(t, token, deploy)
	require.ErrorIs(t, err, redeem.ErrAlreadyUsed, "one grant, one use, whichever way")

	st, rs := f.redemptions(t, id)
	assert.Equal(t, request.StatusRedeemed, st.Status)
	var codes []string
	for _, r := range rs {
		if r.Outcome == events.RedemptionRefused {
			codes = append(codes, r.Code)
		}
	}
	assert.Equal(t, []string{"wrong-holder", "not-accepted", "already-used", "already-used"}, codes)
}
