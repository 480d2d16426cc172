package request

import "fmt"

// Status is where a request stands. The zero value means no valid request.
type Status uint8

// The statuses of a request.
const (
	StatusNone      Status = iota
	StatusRequested        // awaiting the policy decision
	StatusPending          // awaiting approvers
	StatusAllowed          // allowed by policy, awaiting the grant
	StatusApproved         // approved by approvers, awaiting the grant
	StatusGranted
	StatusRejected
	StatusDenied
	StatusExpired
	StatusRedeemed // the grant was used, once
	StatusRevoked  // withdrawn: before it was used, or while what it opened was live (State.InUse)
	// StatusRefused: decided in favour, but the issuer refused to grant it
	// (its requester was locked meanwhile, say): it ends without a grant.
	StatusRefused
)

var statusNames = [...]string{"none", "requested", "pending", "allowed", "approved", "granted", "rejected", "denied", "expired", "redeemed", "revoked", "refused"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", s)
}

// ParseStatus returns the status named s.
func ParseStatus(s string) (Status, error) {
	for i, n := range statusNames {
		if n == s {
			return Status(i), nil
		}
	}
	return StatusNone, fmt.Errorf("unknown status %q", s)
}

// IsTerminal reports whether the request is decided for good: no further
// decision can be made. A granted request can still be redeemed or revoked
// (see IsClosed).
func (s Status) IsTerminal() bool {
	return s == StatusGranted || s.IsClosed() || s == StatusRejected || s == StatusDenied || s == StatusExpired
}

// IsClosed reports whether nothing at all can change the request any more,
// but the revocation of a redeemed grant still in use (State.InUse).
func (s Status) IsClosed() bool {
	return s == StatusRedeemed || s == StatusRevoked || s == StatusRejected || s == StatusDenied || s == StatusExpired || s == StatusRefused
}

// IsPending reports whether the request waits for approvers.
func (s Status) IsPending() bool { return s == StatusPending }

// AwaitsGrant reports whether the request is decided in favour and waits for its grant.
func (s Status) AwaitsGrant() bool { return s == StatusAllowed || s == StatusApproved }
