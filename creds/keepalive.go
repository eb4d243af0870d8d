package creds

import (
	"context"
	"errors"
	"fmt"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// Renewal is one event of keeping the Vault token alive, for the supervisor's journal.
type Renewal struct {
	TTL     time.Duration // the token's TTL after a successful renewal or login
	Relogin bool          // the token was replaced: a new AppRole login, or the token file read again
	Err     error         // a failed renewal, token check or login (classified like Resolve's)
}

// KeepAlive keeps the Vault token usable until ctx ends, reporting each renewal and each
// failure to report (called from KeepAlive's goroutine; nil ignores them). It returns nil when
// ctx ends. Call it at most once per Client.
//
// The supervisor runs for weeks and a periodic token dies after its period unless renewed, so a
// renewable token is renewed with renew-self by api.LifetimeWatcher, at about two thirds of its
// TTL with jitter. When the token cannot be renewed any further (it reached its max TTL, or it
// is not renewable and nears its end) the client authenticates again: an AppRole login, or the
// token file and VAULT_TOKEN read again (an operator may have dropped in a new token). A token
// that never expires (a root token) needs nothing.
//
// A failed renewal is reported, then KeepAlive waits (exponential backoff with full jitter,
// from 1 s up to 5 min, reset by a success), asks Vault whether the token is still valid
// (lookup-self), and either renews it again or, when Vault says it is gone, logs in again.
// Never a request storm: at most one renewal or login (each with the client's own retries) per
// pause. A token revoked while Vault still answers is seen by the watcher only as "not
// renewable" (it keeps quiet until the end of the known TTL); the periodic Resolve notices it
// sooner, as ErrDenied.
func (c *Client) KeepAlive(ctx context.Context, report func(Renewal)) error {
	if report == nil {
		report = func(Renewal) {}
	}
	bo := Backoff{Base: c.backoffMin, Cap: c.backoffMax}
	relogin := false
	for ctx.Err() == nil {
		if relogin {
			old := c.state()
			if err := c.relogin(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				report(Renewal{Err: err})
				if !sleep(ctx, bo.Next()) {
					break
				}
				continue
			}
			relogin = false
			st := c.state()
			if st.token.Equal(old.token) {
				// The token file or VAULT_TOKEN still holds the same token, at the end of its
				// renewals (a max TTL): say so, while it still works.
				report(Renewal{TTL: st.ttl, Err: fmt.Errorf("the Vault token from %s cannot be renewed any further and expires in %v: replace it", c.describe(st.auth), st.ttl.Round(time.Second))})
			} else {
				report(Renewal{TTL: st.ttl, Relogin: true})
			}
		}
		st := c.state()
		if !st.renewable && st.ttl <= 0 {
			<-ctx.Done() // a token without expiry: nothing to renew, nothing to replace
			break
		}
		started := time.Now()
		renewed, err := c.watch(ctx, st, report)
		if ctx.Err() != nil {
			break
		}
		if renewed {
			bo.Reset()
		}
		if err != nil {
			report(Renewal{Err: classify("renew the Vault token from "+c.describe(st.auth)+" (auth/token/renew-self)", err)})
			if !sleep(ctx, bo.Next()) {
				break
			}
			// Still valid? Then the next watcher renews it at once; gone, then log in again.
			if err := c.check(ctx); err != nil {
				if errors.Is(err, ErrDenied) {
					relogin = true
				} else {
					report(Renewal{Err: err})
				}
			}
			continue
		}
		// The watcher returned at the end of the token's life: replace the token. A watcher
		// that ends at once (a token already in its last grace period) must not turn into a
		// login loop: pause first.
		relogin = true
		if time.Since(started) < c.backoffMin && !sleep(ctx, bo.Next()) {
			break
		}
	}
	return nil
}

// watch runs one api.LifetimeWatcher over the current token until it ends or ctx does. It
// reports each renewal. err is a failed renewal; nil means the token reached the end of what
// renewing can give (the watcher's grace period before expiry) or ctx ended.
func (c *Client) watch(ctx context.Context, st tokenState, report func(Renewal)) (renewed bool, err error) {
	// ErrorOnErrors: a failed renewal ends the watcher at once, so that it is reported and
	// paced by KeepAlive (the default, IgnoreErrors, retries silently). RenewDisabled for a
	// token that cannot be renewed: the watcher only waits for the time to log in again.
	behavior := vault.RenewBehaviorErrorOnErrors
	if !st.renewable {
		behavior = vault.RenewBehaviorRenewDisabled
	}
	w, err := c.vc.NewLifetimeWatcher(&vault.LifetimeWatcherInput{
		Secret: &vault.Secret{Auth: &vault.SecretAuth{
			ClientToken:   st.token.Reveal(),
			Renewable:     st.renewable,
			LeaseDuration: int(st.ttl / time.Second),
		}},
		RenewBehavior: behavior,
	})
	if err != nil {
		return false, err
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return renewed, nil
		case err := <-w.DoneCh():
			return renewed, err
		case r := <-w.RenewCh():
			renewed = true
			var ttl time.Duration
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				ttl = time.Duration(r.Secret.Auth.LeaseDuration) * time.Second
				c.mu.Lock()
				c.tok.ttl, c.tok.renewable = ttl, r.Secret.Auth.Renewable
				c.mu.Unlock()
			}
			report(Renewal{TTL: ttl})
		}
	}
}

// check asks Vault about the current token (lookup-self) and updates its state.
func (c *Client) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	st := c.state()
	nst, err := c.lookupSelf(ctx, st.auth, st.token)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.tok = nst
	c.mu.Unlock()
	return nil
}

// relogin authenticates again, in the documented order, within Config.Timeout.
func (c *Client) relogin(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if err := c.login(ctx); err != nil {
		return fmt.Errorf("log in to Vault again: %w", err)
	}
	return nil
}

// sleep waits d or until ctx ends; it reports whether the full d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
