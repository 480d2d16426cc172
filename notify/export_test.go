package notify

// Heading is a notification's Title, as the notifier writes it.
func Heading(n *Notification) string { return n.heading() }

// Render is the body a target of format f receives.
func Render(f WebhookFormat, n *Notification) ([]byte, error) { return render(f, n) }
