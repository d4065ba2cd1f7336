mod auditctl;
