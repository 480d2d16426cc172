package events

// Linked is the data of an event that carries its chain link: Prev, the
// digest of the event before it in its history ("" for the first). Every
// event's data does (TestEveryKindIsLinked): a fold checks the link
// before it believes an event, and a writer sets it to the history's last
// digest. Each data type says so in code rather than being searched, by
// reflection, for a field named Prev; TestEveryKindIsLinked checks that
// none with such a field fails to say so.
type Linked interface {
	PrevDigest() string
	SetPrevDigest(prev string)
}

// Prev returns the chain link of an event's data; "" for data without
// one (nil, or not Linked).
func Prev(data any) string {
	if l, ok := data.(Linked); ok {
		return l.PrevDigest()
	}
	return ""
}

// SetPrev sets the chain link of an event's data; it reports whether the
// data has one.
func SetPrev(data any, prev string) bool {
	l, ok := data.(Linked)
	if ok {
		l.SetPrevDigest(prev)
	}
	return ok
}

func (d *Requested) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Requested) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Rejected) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Rejected) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Refused) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Refused) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Counted) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Counted) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Evaluated) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Evaluated) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Voted) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Voted) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Approved) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Approved) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Denied) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Denied) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Expired) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Expired) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Granted) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Granted) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Redeemed) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Redeemed) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Revoked) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Revoked) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Revoke) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Revoke) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Lock) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Lock) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Locked) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Locked) SetPrevDigest(prev string) { d.Prev = prev }

func (d *State) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *State) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Stated) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Stated) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Escalated) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Escalated) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Alerted) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Alerted) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Reviewed) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Reviewed) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Policy) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Policy) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Checkpoint) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Checkpoint) SetPrevDigest(prev string) { d.Prev = prev }

func (d *Witnessed) PrevDigest() string {
	if d == nil {
		return ""
	}
	return d.Prev
}
func (d *Witnessed) SetPrevDigest(prev string) { d.Prev = prev }
