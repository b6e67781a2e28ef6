//! Whole-service tests: a real server per test, on SQLite and on PostgreSQL, reached over
//! real HTTP; and the real `xcord` binary started as a process.

mod auth;
mod compat_hype;
mod compat_hype_voice;
mod compat_rtms;
mod compat_socketio;
mod files;
mod gateway;
mod gateway_session;
mod hardening;
mod health;
mod jobs_crash;
mod limits;
mod mail;
mod messages;
mod multinode;
mod outbox;
mod pages;
mod pins;
mod process;
mod routes;
mod scheduled;
mod servers;
mod transport;
mod usecases;
mod users;
mod voice;
mod voice_browser;
mod voice_nodes;
