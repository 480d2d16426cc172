package identity

// InboxPrefix is the inbox prefix of a connection of user key user of
// domain: the server lets each identity hear replies there and nowhere
// else under _INBOX. The domain comes first so that a leafnode link
// carries only its own domain's replies.
func InboxPrefix(domain, user string) string { return "_INBOX." + domain + "." + user }
