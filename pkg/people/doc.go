// Package people is who signs in to the console: users (owners and
// members of an account, and staff operators), their passwords (argon2id),
// their sessions, and the single-use links that invite them or reset a
// password. The console (package console) and the `levqor user` commands
// act through it; the tables are the store's.
package people
