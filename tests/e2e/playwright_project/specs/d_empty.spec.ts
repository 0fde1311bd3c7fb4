// A file that holds no test.
export {};
