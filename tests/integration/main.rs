//! Integration tests: the real binary against real listeners on loopback,
//! and against the network-namespace lab for every fault.

mod browser;
mod cli;
mod daemons;
mod dns;
mod http;
mod kinds;
mod lab;
mod layering;
mod monitor;
mod nodes;
mod notify;
mod postgres;
mod proto;
mod security;
mod serve;
mod udp;
mod util;
mod web;
