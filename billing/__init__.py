"""Billing: usage events, the ledger, the price book, reports and the Stripe export."""
