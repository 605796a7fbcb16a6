// Package hmc owns the IBM Z HMC push channels: a STOMP receiver for the
// HMC's JMS job-completion messages and an SSE receiver for HMC 2.16 and
// later. A push message is only a hint: the notifier names the job to the
// bridge (Hinter.Hint), which polls it at once through the HMC poller and
// publishes what changed. After every connect, reconnect and re-logon it
// asks the bridge to reconcile (Hinter.Reconcile: poll every tracked HMC
// job), because the HMC's topics are not durable and nothing sent while no
// subscriber was connected is ever replayed. Between notifications HMC jobs
// need only a slow safety poll (InstanceInterval).
//
// Vendor facts: shared/reference/hmc-notifications.md §2, §3, §6, §8;
// client pitfalls: anchors-and-pitfalls.md §7, §8. The SSE operations are
// only partly documented; what this package assumes about them is in
// sseapi.go and nowhere else.
//
// The session (logon, renewal, topic names) is package pollers/hmc's: the
// notifier follows Poller.SubscribeSession and logs in to the broker with
// the session's id and credential, which also works with MFA.
package hmc
