package triage_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/support/triage"
)

func defaultRules(t testing.TB) *triage.Rules {
	t.Helper()
	r, err := triage.Load("")
	require.NoError(t, err)
	return r
}

// TestDefaultRulesTriage runs realistic tickets, as customers write them,
// through the rules Levqor ships. The account is a growth (standard SLA)
// customer, so routing does not depend on the tier here.
func TestDefaultRulesTriage(t *testing.T) {
	t.Parallel()
	r := defaultRules(t)
	for _, tc := range []struct {
		name               string
		subject, body      string
		category, severity string
		fired              []string // rules that must be among FiredRules
	}{
		{"RestoreUrgently", "Restore my files urgently", "", "restore_request", "high", []string{"restore_request.ask", "urgency.urgent"}},
		{"WeLostData", "We lost data", "", "data_loss", "critical", []string{"data_loss.lost"}},
		{"InvoiceWrong", "Invoice wrong", "The invoice for November shows 3 seats, we have 2.", "billing", "normal", []string{"billing.general", "billing.charge_problem", "default.severity"}},
		{"CannotLogIn", "Cannot log in", "I reset my password twice and still get an error.", "account", "normal", []string{"account.access"}},
		{"BackupsFailing", "Backups failing since Tuesday", "The nightly backup of our file server has failed three nights in a row.", "backup_failure", "normal", []string{"backup_failure.failed"}},
		{"ChargedTwice", "Charged twice this month", "Our card was charged twice for the Business plan.", "billing", "normal", []string{"billing.charge_problem"}},
		{"Ransomware", "Ransomware", "Our office was hit by ransomware last night, we need to restore everything ASAP", "data_loss", "critical", []string{"data_loss.ransomware", "restore_request.ask", "urgency.urgent"}},
		{"JustWondering", "Question about retention", "How long do you keep daily snapshots? Just wondering.", "other", "low", []string{"urgency.low", "default.category"}},
		{"NotUrgentRestore", "Not urgent", "Could you restore a spreadsheet I deleted by mistake last week?", "restore_request", "low", []string{"restore_request.ask", "restore_request.mistake", "urgency.low"}},
		{"LegacyBackupSet", "URGENT: backup set failed", "Our backup set 'Accounts' failed last night.", "backup_failure", "high", []string{"backup_failure.failed", "urgency.urgent"}},
		{"LegacyVault", "Vault sync error", "Since yesterday the vault sync errors out every night.", "backup_failure", "normal", []string{"backup_failure.failed"}},
		{"LegacyBackupJob", "Backup job failed", "Protection plan 'Office' reports: job failed (code 17).", "backup_failure", "normal", []string{"backup_failure.failed"}},
		{"RetentionDeleted", "Snapshots deleted by retention", "The retention sweep deleted snapshots we were told would be kept for a year.", "data_loss", "critical", []string{"data_loss.retention"}},
		{"RestoreKeepsFailing", "Restore keeps failing", "Every restore attempt stops at 40% with a checksum mismatch.", "restore_request", "high", []string{"restore_request.failed", "backup_failure.corrupt"}},
		{"PaymentFailed", "Payment failed", "Your email said my payment failed, my card expired. How do I update it?", "billing", "normal", []string{"billing.payment_failed"}},
		{"AccountSuspended", "Cannot access backups", "Our account is suspended for non-payment, we can't get to our backups.", "billing", "high", []string{"billing.suspended"}},
		{"LostPhoneNotData", "2FA: lost my phone", "I lost my phone and can't get my 2FA codes, please help me log in.", "account", "normal", []string{"account.access"}},
		{"CancelSubscription", "Cancel subscription", "Please cancel our subscription at the end of the term.", "billing", "normal", nil},
		{"QuickPriceQuestion", "Extra storage", "What is the price of the extra storage add-on? Quick question.", "billing", "low", []string{"urgency.low"}},
		{"BackupOverdue", "Backups haven't run since Friday", "Last backup was Friday 02:00; the agent is offline.", "backup_failure", "normal", []string{"backup_failure.overdue", "backup_failure.failed"}},
		{"Corrupt", "Corrupted snapshot", "Verification failed on snapshot 2026-11-20: corrupt pack file.", "backup_failure", "high", []string{"backup_failure.corrupt"}},
		{"ProductionDatabaseDown", "Need a restore now", "Our production database is down and we need yesterday's snapshot restored immediately.", "restore_request", "critical", []string{"urgency.critical", "urgency.urgent"}},
		{"FeatureRequestAboutFailures", "Feature request: Slack alerts", "Would be nice to get a Slack message when a backup fails.", "other", "low", []string{"urgency.low"}},
		{"GDPR", "GDPR request", "Please delete all data you hold about me: right to be forgotten.", "account", "normal", []string{"account.manage"}},
		{"PreventDataLossIsAQuestion", "How do I avoid data loss?", "We want a policy that helps prevent data loss.", "other", "normal", []string{"default.category", "default.severity"}},
		{"ChargedAfterCancelling", "Refund please", "We were charged after cancelling, please refund.", "billing", "normal", []string{"billing.charge_problem"}},
		{"CurlyApostrophe", "Can’t restore", "I can’t restore from last night’s snapshot; it says access denied.", "restore_request", "high", []string{"restore_request.failed", "account.access"}},
		{"FilesMissingFromBackup", "Files missing", "Some files are missing from the backup of our NAS.", "data_loss", "critical", []string{"data_loss.lost"}},
		{"Greeting", "Hello", "", "other", "normal", []string{"default.category", "default.severity"}},
		{"Empty", "", "", "other", "normal", []string{"default.category", "default.severity"}},
		{"UpgradePlan", "Upgrade", "We'd like to upgrade our plan to Enterprise with annual billing.", "billing", "normal", nil},
		{"TeamMemberSSO", "Team member can't sign in", "A new team member can't sign in with SSO.", "account", "normal", []string{"account.access", "account.manage"}},
		{"SlowButNotUrgent", "Slow restore", "The restore is slow but not urgent, it's working.", "restore_request", "low", []string{"urgency.low"}},
		{"Shouting", "EMERGENCY!!!", "EVERYTHING IS DOWN, CAN'T OPERATE", "other", "critical", []string{"urgency.critical", "urgency.urgent"}},
		{"AutomaticOverdueWording", "Backup overdue: fileserver-01", "No backup since 2026-11-20 for source fileserver-01.", "backup_failure", "normal", []string{"backup_failure.overdue"}},
		{"InvoiceNoRush", "Invoice copy", "Can I get a copy of my invoice with our VAT number? No rush.", "billing", "low", nil},
		{"DeletedByMistake", "Deleted by mistake", "I accidentally deleted the Finance folder this morning, can you help?", "restore_request", "normal", []string{"restore_request.mistake"}},
		{"RestaurantIsNotRestore", "Restaurant POS", "Need help setting up a source for our restaurant POS.", "other", "normal", []string{"default.category"}},
		{"Hacked", "Hacked", "Our server got hacked and files were encrypted.", "data_loss", "critical", []string{"data_loss.ransomware"}},
		{"RecoverEmails", "Recover deleted emails", "Can you recover the emails deleted from the shared mailbox on Monday?", "restore_request", "normal", nil},
		{"Forbidden", "Login page shows 403", "", "account", "normal", nil},
		{"ChargedTwiceAndBackupsFailing", "Two problems", "We were charged twice and our backups are failing.", "backup_failure", "normal", []string{"billing.charge_problem", "backup_failure.failed"}},
		{"BusinessCriticalFilesAreNotUrgent", "Restore", "Please restore the business-critical files from 1 October.", "restore_request", "normal", nil},
		{"NoDataLoss", "Backup failed", "A backup failed last night. No data was lost, but please check.", "backup_failure", "normal", nil},
		{"PhraseAcrossSubjectAndBody", "We lost", "data centre access in the move, can we change the source address?", "other", "normal", []string{"default.category"}},
		{"OtherLanguage", "Sauvegarde échouée", "La sauvegarde de cette nuit a échoué.", "other", "normal", []string{"default.category"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := r.Classify(triage.Input{Subject: tc.subject, Body: tc.body, Tier: "growth", SLAClass: "standard"})
			require.Equal(t, tc.category, d.Category, "category; fired %v", d.FiredRules)
			require.Equal(t, tc.severity, d.Severity, "severity; fired %v", d.FiredRules)
			for _, id := range tc.fired {
				require.Contains(t, d.FiredRules, id)
			}
			require.NotEmpty(t, d.Queue)
			require.Contains(t, []string{"route.standard", "route.data_loss"}, d.FiredRules[len(d.FiredRules)-1], "the routing rule comes last")
		})
	}
}

// TestCustomerChoice pins the policy on what the customer chose: it
// stands, except that data-loss rules (override_customer) may change the
// category and raise the severity; nothing lowers it.
func TestCustomerChoice(t *testing.T) {
	t.Parallel()
	r := defaultRules(t)
	for _, tc := range []struct {
		name               string
		in                 triage.Input
		category, severity string
		fired, notFired    []string
	}{
		{"DataLossOverridesBillingLow",
			triage.Input{Subject: "Card declined", Body: "After the card was declined we lost all our data!", Category: "billing", Severity: "low"},
			"data_loss", "critical", []string{"data_loss.lost", "billing.payment_failed"}, []string{"customer.category", "customer.severity"}},
		{"OtherRulesLeaveTheCategory",
			triage.Input{Subject: "Help", Body: "My backups are failing.", Category: "account", Severity: "normal"},
			"account", "normal", []string{"backup_failure.failed", "customer.category", "customer.severity"}, nil},
		{"CustomerSeverityStandsEvenIfHigh",
			triage.Input{Subject: "Invoice wrong", Category: "billing", Severity: "critical"},
			"billing", "critical", []string{"customer.category", "customer.severity"}, nil},
		{"NoRushDoesNotLowerTheCustomer",
			triage.Input{Subject: "Restore", Body: "No rush.", Severity: "high"},
			"restore_request", "high", []string{"urgency.low", "customer.severity"}, nil},
		{"UrgentDoesNotRaiseTheCustomer",
			triage.Input{Subject: "URGENT restore", Body: "Please restore the folder.", Severity: "low"},
			"restore_request", "low", []string{"urgency.urgent", "customer.severity"}, nil},
		{"DataLossRaisesTheCustomer",
			triage.Input{Subject: "Files gone?", Body: "Looks like we lost data on the NAS.", Category: "data_loss", Severity: "low"},
			"data_loss", "critical", []string{"data_loss.lost", "customer.category"}, []string{"customer.severity"}},
		{"RansomwareFiledAsRestore",
			triage.Input{Subject: "Restore needed", Body: "Ransomware encrypted all our shares.", Category: "restore_request", Severity: "high"},
			"data_loss", "critical", []string{"data_loss.ransomware"}, []string{"customer.category"}},
		{"UnknownChoicesAreIgnored",
			triage.Input{Subject: "Cannot log in", Category: "urgent", Severity: "asap"},
			"account", "normal", []string{"account.access", "default.severity"}, []string{"customer.category", "customer.severity"}},
		{"ChoiceIsCaseAndSpaceInsensitive",
			triage.Input{Subject: "Hello", Category: " Billing ", Severity: "HIGH"},
			"billing", "high", []string{"customer.category", "customer.severity"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := r.Classify(tc.in)
			require.Equal(t, tc.category, d.Category, "fired %v", d.FiredRules)
			require.Equal(t, tc.severity, d.Severity, "fired %v", d.FiredRules)
			for _, id := range tc.fired {
				require.Contains(t, d.FiredRules, id)
			}
			for _, id := range tc.notFired {
				require.NotContains(t, d.FiredRules, id)
			}
		})
	}
}

func TestDefaultRouting(t *testing.T) {
	t.Parallel()
	r := defaultRules(t)
	for _, tc := range []struct {
		name               string
		tier, class        string
		dfy                bool
		category, severity string
		queue, rule        string
	}{
		{"EnterpriseCritical", "enterprise", "enterprise", false, "billing", "critical", "priority", "route.enterprise_critical"},
		{"EnterpriseHigh", "enterprise", "enterprise", false, "backup_failure", "high", "enterprise", "route.enterprise"},
		{"EnterpriseDFY", "enterprise", "enterprise", true, "account", "normal", "dfy", "route.dfy"},
		{"EnterpriseDFYCritical", "enterprise", "enterprise", true, "account", "critical", "priority", "route.enterprise_critical"},
		{"PrioritySupportCritical", "growth", "priority", false, "backup_failure", "critical", "priority", "route.priority_support_critical"},
		{"PrioritySupportHigh", "growth", "priority", false, "backup_failure", "high", "general", "route.standard"},
		{"StarterDataLoss", "starter", "standard", false, "data_loss", "critical", "priority", "route.data_loss"},
		{"StarterCriticalBilling", "starter", "standard", false, "billing", "critical", "general", "route.standard"},
		{"BusinessCritical", "business", "business", false, "other", "critical", "priority", "route.business_critical"},
		{"BusinessNormal", "business", "business", false, "billing", "normal", "business", "route.business"},
		{"BusinessDFY", "business", "business", true, "billing", "normal", "dfy", "route.dfy"},
		{"BusinessDFYCritical", "business", "business", true, "billing", "critical", "dfy", "route.dfy"},
		{"GrowthLow", "growth", "standard", false, "other", "low", "general", "route.standard"},
		{"NoSubscription", "", "", false, "billing", "normal", "general", "default.queue"},
		{"UnknownTier", "platinum", "standard", false, "restore_request", "high", "general", "default.queue"},
		{"UnresolvedLegacyTier", "premium", "business", false, "restore_request", "normal", "general", "default.queue"},
		{"UnknownTierDataLoss", "platinum", "", false, "data_loss", "critical", "priority", "route.data_loss"},
		{"TierCaseAndSpaces", " Enterprise ", "ENTERPRISE", false, "billing", "normal", "enterprise", "route.enterprise"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := triage.Input{Tier: tc.tier, SLAClass: tc.class, DFY: tc.dfy}
			queue, rule := r.Route(in, tc.category, tc.severity)
			require.Equal(t, tc.queue, queue)
			require.Equal(t, tc.rule, rule)

			// Classify routes the same way when the customer's choice
			// decides category and severity.
			in.Subject, in.Category, in.Severity = "Hello", tc.category, tc.severity
			d := r.Classify(in)
			require.Equal(t, tc.queue, d.Queue)
			require.Equal(t, tc.rule, d.FiredRules[len(d.FiredRules)-1])
		})
	}
}

func TestClassifyEndToEnd(t *testing.T) {
	t.Parallel()
	r := defaultRules(t)
	d := r.Classify(triage.Input{Subject: "We lost data", Body: "All snapshots of the CRM database are gone.",
		Tier: "enterprise", SLAClass: "enterprise"})
	require.Equal(t, triage.Decision{Category: "data_loss", Severity: "critical", Queue: "priority",
		FiredRules: []string{"data_loss.lost", "route.enterprise_critical"}}, d)

	d = r.Classify(triage.Input{Subject: "Invoice", Body: "Hi, where do I find last month's invoice?", Tier: "business", SLAClass: "business", DFY: true})
	require.Equal(t, triage.Decision{Category: "billing", Severity: "normal", Queue: "dfy",
		FiredRules: []string{"billing.general", "default.severity", "route.dfy"}}, d)

	require.Equal(t, []string{"data_loss", "restore_request", "backup_failure", "billing", "account", "other"}, r.Categories())
}
