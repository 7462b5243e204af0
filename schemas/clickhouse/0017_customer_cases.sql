-- Customer cases (issue 19, docs/alerting.md "Customer rules"): what a case asks for
-- (callback, churn_risk; '' for other cases), the pseudonymous customer id as stored on the
-- feedback ('' for none) and the channels of its linked feedback. Rows stored before hold ''
-- and [] (they were not customer cases).
ALTER TABLE case_events ADD COLUMN case_kind String DEFAULT '';
ALTER TABLE case_events ADD COLUMN customer_id String DEFAULT '';
ALTER TABLE case_events ADD COLUMN channels Array(String)
