-- Where a subscription's receipts, payment failures and cancellation notices go (none: not sent).
ALTER TABLE billing_subscriptions ADD COLUMN billing_email text;
