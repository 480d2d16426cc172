package events

// An ask is the data of an event a principal signs (a kind whose row says
// principal): the signer's identity JWT, the principal it claims to be,
// and the domain it is meant for, which Inspect checks the signer against.
// A test holds every principal kind's data type to it.
type ask interface {
	asker() (identityJWT string, claimed PrincipalRef, domain string)
}

func (d *Requested) asker() (string, PrincipalRef, string) { return d.Identity, d.Requester, d.Domain }
func (d *Voted) asker() (string, PrincipalRef, string)     { return d.Identity, d.Voter, d.Domain }
func (d *Revoke) asker() (string, PrincipalRef, string)    { return d.Identity, d.By, d.Domain }
func (d *Lock) asker() (string, PrincipalRef, string)      { return d.Identity, d.By, d.Domain }
func (d *State) asker() (string, PrincipalRef, string)     { return d.Identity, d.By, d.Domain }
