-- Zero-amount transactions (card verifications) are valid end to end (issue 13): the message
-- contract accepts amount >= 0, so the table must store them. Negative amounts stay refused.
ALTER TABLE transactions DROP CONSTRAINT IF EXISTS transactions_amount_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_amount_check CHECK (amount >= 0);
